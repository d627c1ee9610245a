"""Retries (`tuner.max_retries_per_trial`): a trial that failed for a reason outside its config (an
out-of-memory error in training, its agent lost) is trained again up to the limit, its new run
naming the last one (tag `sweeplab.retry_of`); a NaN loss or a model outside the constraints is not."""

from __future__ import annotations

from collections import defaultdict

import pytest
import tensorflow as tf
from conftest import FIXED_MLP
from mlflow import MlflowClient

from sweeplab.app import run
from sweeplab.errors import SweeplabError
from sweeplab.search import tuning

# Two trials of the mlp (grid order: 8 units, then 16).
TWO_POINTS = [
    *FIXED_MLP,
    "tuner=grid",
    "tuner.max_trials=2",
    "model.space.units={type: choice, values: [8, 16], default: 8}",
]
QUICK = ["trainer.epochs=2", "trainer.verbose=0", "tracking.log_models=false", "ensemble=none", "tuner.pack=1"]


def runs_by_trial(uri: str) -> dict[str, list]:
    """{trial id: its runs, oldest first}."""
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = defaultdict(list)
    for r in sorted(client.search_runs(experiments, "tags.`sweeplab.role` = 'trial'"), key=lambda r: r.info.start_time):
        found[r.data.tags["sweeplab.trial_id"]].append(r)
    return dict(found)


@pytest.fixture
def first_fit_runs_out_of_memory(monkeypatch):
    """Trial 0's first training raises what TensorFlow raises when a tensor does not fit in memory."""
    fit = tuning.TrackedTrials._build_and_fit_model
    tried: list[str] = []

    def out_of_memory_once(self, trial, *args, **kwargs):
        tried.append(trial.trial_id)
        if tried == ["0"]:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[65536,65536]")
        return fit(self, trial, *args, **kwargs)

    monkeypatch.setattr(tuning.TrackedTrials, "_build_and_fit_model", out_of_memory_once)
    return tried


def test_a_trial_that_ran_out_of_memory_is_trained_again_and_its_runs_are_linked(
    store, make_config, first_fit_runs_out_of_memory
):
    run(make_config([*store["overrides"], *QUICK, *TWO_POINTS]))  # one retry: the default
    trials = runs_by_trial(store["uri"])
    failed, retried = trials["0"]
    assert failed.info.status == "FAILED" and "ResourceExhaustedError" in failed.data.tags["sweeplab.failure"]
    assert retried.info.status == "FINISHED"
    assert retried.data.tags["sweeplab.retry_of"] == failed.info.run_id
    assert len(MlflowClient(store["uri"]).get_metric_history(retried.info.run_id, "loss")) == 2
    assert [r.info.status for r in trials["1"]] == ["FINISHED"] and "sweeplab.retry_of" not in trials["1"][0].data.tags


def test_without_retries_the_trial_stays_failed(store, make_config, first_fit_runs_out_of_memory):
    run(make_config([*store["overrides"], *QUICK, *TWO_POINTS, "tuner.max_retries_per_trial=0"]))
    trials = runs_by_trial(store["uri"])
    assert [r.info.status for r in trials["0"]] == ["FAILED"]
    assert first_fit_runs_out_of_memory == ["0", "1"]


@pytest.mark.parametrize("pack", ["1", "2"])
def test_a_trial_outside_the_constraints_is_not_tried_again(store, make_config, pack):
    # 8 units: 610 trainable parameters on digits; 64 units: 4810, over the bound.
    sizes = [
        "tuner=grid",
        "model.space.units={type: choice, values: [8, 64], default: 8}",
        "model.space.learning_rate=0.003",
    ]
    overrides = [*QUICK, *FIXED_MLP, *sizes, "tuner.max_trials=2", "tuner.max_retries_per_trial=2"]
    run(make_config([*store["overrides"], *overrides, f"tuner.pack={pack}", "tuner.constraints.params.max=1000"]))
    trials = runs_by_trial(store["uri"])
    assert {trial: len(runs) for trial, runs in trials.items()} == {"0": 1, "1": 1}
    assert trials["1"][0].data.tags["sweeplab.infeasible"] == "tuner.constraints: params 4810 > max 1000"


def test_a_diverging_trial_is_not_tried_again(store, make_config):
    diverging = ["trainer.optimizer=sgd", "model.space.learning_rate=1.0e9", "tuner.max_retries_per_trial=2"]
    with pytest.raises(SweeplabError, match="every trial of search .* failed"):
        run(make_config([*store["overrides"], *QUICK, *FIXED_MLP, *diverging, "tuner.max_trials=1"]))
    assert {trial: [r.info.status for r in runs] for trial, runs in runs_by_trial(store["uri"]).items()} == {
        "0": ["FAILED"]
    }


def test_a_trial_whose_agent_is_lost_past_the_limit_ends_failed(tmp_path):
    import keras_tuner as kt

    from sweeplab.search import retries

    hp = kt.HyperParameters()
    hp.Choice("units", [4, 8])
    oracle = kt.oracles.RandomSearchOracle(
        objective="val_loss", max_trials=2, hyperparameters=hp, max_retries_per_trial=1
    )
    oracle._set_project_dir(str(tmp_path), "lost")
    retries.retry(oracle)
    trial = oracle.create_trial("agent-a")
    oracle.update_trial(trial.trial_id, {"val_loss": 1.0}, step=0)
    assert retries.hand_over(oracle, [oracle.ongoing_trials.pop("agent-a")], "agent lost") == [trial]
    again = oracle.create_trial("agent-b")  # the next to ask trains it, afresh
    assert again.trial_id == trial.trial_id and not again.metrics.exists("val_loss")
    assert retries.hand_over(oracle, [oracle.ongoing_trials.pop("agent-b")], "agent lost") == []
    assert oracle.trials[trial.trial_id].status == "FAILED" and trial.trial_id not in oracle._retry_queue


@pytest.mark.parametrize("retries_per_trial", [1, 0])
def test_a_trial_lost_after_the_others_ran_out_of_trials_is_trained_by_one_of_them(tmp_path, retries_per_trial):
    """Agent a finishes its trial once every trial has been handed out, while agent b still trains
    the last: a waits (IDLE) instead of leaving, so that b's trial, handed over when b is lost,
    is trained again. Without retries nothing can come back: a is told the search is over."""
    import keras_tuner as kt

    from sweeplab.search import retries

    hp = kt.HyperParameters()
    hp.Choice("units", [4, 8])
    oracle = kt.oracles.RandomSearchOracle(
        objective="val_loss", max_trials=2, hyperparameters=hp, max_retries_per_trial=retries_per_trial
    )
    oracle._set_project_dir(str(tmp_path), "lost-late")
    retries.retry(oracle)
    first, last = oracle.create_trial("agent-a"), oracle.create_trial("agent-b")
    oracle.update_trial(first.trial_id, {"val_loss": 1.0}, step=0)
    first.status = "COMPLETED"
    oracle.end_trial(first)
    told = oracle.create_trial("agent-a")
    if not retries_per_trial:
        assert told.status == "STOPPED" and "agent-a" not in oracle.tuner_ids
        return
    assert told.status == "IDLE" and "agent-a" in oracle.tuner_ids
    assert retries.hand_over(oracle, [oracle.ongoing_trials.pop("agent-b")], "agent lost") == [last]
    oracle.tuner_ids.discard("agent-b")
    again = oracle.create_trial("agent-a")
    assert again.status == "RUNNING" and again.trial_id == last.trial_id
    oracle.update_trial(again.trial_id, {"val_loss": 0.5}, step=0)
    again.status = "COMPLETED"
    oracle.end_trial(again)
    assert oracle.create_trial("agent-a").status == "STOPPED" and not oracle.tuner_ids
