"""Pruning across trials (`pruner=asha|median`): the oracle answers an epoch's result with STOPPED
for a trial that lags, in a pack, trained alone, or on an agent; a pruned trial keeps its run
(FINISHED, tagged with the epochs it trained)."""

from __future__ import annotations

import keras_tuner as kt
import pytest
from conftest import FIXED_MLP, TINY
from keras_tuner.src.engine import trial as trial_module
from mlflow import MlflowClient
from stores import sqlite_uri

from sweeplab.app import run
from sweeplab.config.validation import validate
from sweeplab.ensemble.builder import Filters, candidate_runs
from sweeplab.errors import ConfigError
from sweeplab.search import pruning, retries

# Half the trials learn (learning rate 0.01) and half cannot (1e-7): the oracle has something to prune.
TWO_SPEEDS = [
    *FIXED_MLP,
    "model.space.learning_rate={type: choice, values: [0.01, 1.0e-7], default: 0.01}",
    "tuner=grid",
    "tuner.max_trials=4",
    "trainer.epochs=3",
    "trainer.early_stopping.enabled=false",
    "model.space.units={type: choice, values: [8, 16], default: 16}",
]


def trial_runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "tags.`sweeplab.role` = 'trial'")


def pruned_search(tmp_path, make_config, *overrides: str):
    uri = sqlite_uri(tmp_path)
    cfg = make_config(
        [*TINY, f"tracking.uri={uri}", f"state_dir={tmp_path / 'state'}", "ensemble=none", *TWO_SPEEDS, *overrides]
    )
    run(cfg)
    client = MlflowClient(uri)
    runs = trial_runs(uri)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    return client, runs


@pytest.mark.parametrize("pack", ["auto", "1"])
def test_asha_prunes_the_trials_that_cannot_learn_and_keeps_their_runs(tmp_path, make_config, capsys, pack):
    # One rung, at 2 epochs (then 4): the top half of those that reached it goes on (a pack's trials
    # reach it together, each compared with all the others).
    asha = ("pruner=asha", "pruner.min_epochs=2", "pruner.reduction_factor=2", "pruner.warmup_trials=1")
    client, runs = pruned_search(tmp_path, make_config, *asha, f"tuner.pack={pack}")
    pruned = {r.data.params["learning_rate"]: r for r in runs if "sweeplab.pruned" in r.data.tags}
    kept = [r for r in runs if "sweeplab.pruned" not in r.data.tags]
    assert pruned and set(pruned) == {"1e-07"}, {r.data.params["learning_rate"]: r.data.tags for r in runs}
    for r in pruned.values():
        trained = len(client.get_metric_history(r.info.run_id, "loss"))
        assert trained == int(r.data.tags["sweeplab.pruned"]) == 2
        assert "val_accuracy" in r.data.metrics  # scored by its best epoch, as any trial
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 3 for r in kept)
    out = capsys.readouterr().out
    assert ", pruned" in out
    assert "(pruned at 2)" in out  # the leaderboard says which
    # Ensembles leave them out, unless asked.
    experiment_id = runs[0].info.experiment_id
    candidates = candidate_runs(client, experiment_id, "val_accuracy", True, Filters())
    assert {r.info.run_id for r in candidates} == {r.info.run_id for r in kept}
    everyone = candidate_runs(client, experiment_id, "val_accuracy", True, Filters(include_pruned=True))
    assert len(everyone) == 4


def test_a_resumed_search_knows_the_trials_it_pruned(tmp_path, make_config):
    asha = ("pruner=asha", "pruner.min_epochs=2", "pruner.reduction_factor=2", "pruner.warmup_trials=1")
    _, runs = pruned_search(tmp_path, make_config, *asha)
    tagged = {
        r.data.tags["sweeplab.trial_id"]: int(r.data.tags["sweeplab.pruned"])
        for r in runs
        if "sweeplab.pruned" in r.data.tags
    }
    (saved,) = (tmp_path / "state").glob("*/*/oracle.json")
    oracle = kt.oracles.RandomSearchOracle(objective=OBJECTIVE, max_trials=4)
    oracle._set_project_dir(str(saved.parent.parent), saved.parent.name)
    oracle.reload()
    pruning.prune_with(oracle, pruning.Asha(_Cfg(min_epochs=2, reduction_factor=2, warmup_trials=1)))
    assert tagged and oracle.pruned == tagged


def test_a_retried_trial_starts_its_epochs_afresh(tmp_path):
    oracle = kt.oracles.RandomSearchOracle(objective=OBJECTIVE, max_trials=5, seed=1)
    oracle._set_project_dir(str(tmp_path), "search")
    retries.retry(oracle)  # as make_tuner does, before the pruner
    pruning.prune_with(oracle, pruning.Median(_Cfg(min_epochs=1, warmup_trials=1)))
    oracle.hyperparameters.Float("x", 0, 1)
    lost = oracle.create_trial("worker0")
    oracle.update_trial(lost.trial_id, {"val_accuracy": 0.1}, step=0)
    # The worker is lost (search/chief.py `_hand_over`): its trial goes back in the queue.
    oracle.ongoing_trials.pop("worker0")
    oracle._retry_queue.append(lost.trial_id)
    retried = oracle.create_trial("worker1")
    assert retried.trial_id == lost.trial_id
    assert not retried.metrics.exists("val_accuracy") or not retried.metrics.get_history("val_accuracy")


def test_without_a_pruner_every_trial_trains_its_epochs(tmp_path, make_config):
    client, runs = pruned_search(tmp_path, make_config, "pruner=none")
    assert not any("sweeplab.pruned" in r.data.tags for r in runs)
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 3 for r in runs)


def test_median_prunes_a_trial_worse_than_the_median_of_the_others(tmp_path, make_config):
    client, runs = pruned_search(tmp_path, make_config, "pruner=median", "pruner.min_epochs=2", "tuner.pack=1")
    pruned = [r for r in runs if "sweeplab.pruned" in r.data.tags]
    assert pruned and all(r.data.params["learning_rate"] == "1e-07" for r in pruned)


def _trial(trial_id: str, curve: list[float]) -> trial_module.Trial:
    trial = trial_module.Trial(kt.HyperParameters(), trial_id=trial_id)
    trial.metrics.register("val_accuracy", direction="max")
    for step, value in enumerate(curve):
        trial.metrics.update("val_accuracy", value, step=step)
    return trial


class _Cfg:
    def __init__(self, **values):
        self.__dict__.update(values)


OBJECTIVE = kt.Objective("val_accuracy", "max")


def test_asha_compares_only_at_its_rungs_with_those_that_reached_them():
    asha = pruning.Asha(_Cfg(min_epochs=1, reduction_factor=2, warmup_trials=1))
    assert [e for e in range(1, 10) if asha.compares_at(e)] == [1, 2, 4, 8]
    trials = {"a": _trial("a", [0.5, 0.9, 0.9]), "b": _trial("b", [0.6, 0.5, 0.5]), "c": _trial("c", [0.7])}
    # Epoch 2 (step 1): b is in the bottom half of {a: 0.9, b: 0.6 (its best so far)}.
    assert asha.should_stop(trials, "b", 1, OBJECTIVE)
    assert not asha.should_stop(trials, "a", 1, OBJECTIVE)
    # Epoch 3 is no rung; at epoch 1, c (0.7) is at the top.
    assert not asha.should_stop(trials, "b", 2, OBJECTIVE)
    assert not asha.should_stop(trials, "c", 0, OBJECTIVE)
    # Too few others reached the rung yet.
    strict = pruning.Asha(_Cfg(min_epochs=1, reduction_factor=2, warmup_trials=3))
    assert not strict.should_stop(trials, "b", 1, OBJECTIVE)


def test_median_compares_best_values_so_far_at_the_same_epoch():
    median = pruning.Median(_Cfg(min_epochs=2, warmup_trials=2))
    trials = {
        "a": _trial("a", [0.5, 0.8]),
        "b": _trial("b", [0.6, 0.7]),
        "c": _trial("c", [0.65, 0.6]),
        "d": _trial("d", [0.9]),
    }
    assert not median.should_stop(trials, "c", 0, OBJECTIVE)  # before min_epochs
    assert median.should_stop(trials, "c", 1, OBJECTIVE)  # 0.65 < median(0.8, 0.7)
    assert not median.should_stop(trials, "a", 1, OBJECTIVE)


def test_the_oracle_answers_stopped_to_a_lagging_trial_and_keeps_its_own_status(tmp_path):
    oracle = kt.oracles.RandomSearchOracle(objective=OBJECTIVE, max_trials=5, seed=1)
    oracle._set_project_dir(str(tmp_path), "search")
    pruning.prune_with(oracle, pruning.Median(_Cfg(min_epochs=1, warmup_trials=1)))
    oracle.hyperparameters.Float("x", 0, 1)
    first, second = oracle.create_trial("t0"), oracle.create_trial("t1")
    assert oracle.update_trial(first.trial_id, {"val_accuracy": 0.9}, step=0).status == "RUNNING"
    answer = oracle.update_trial(second.trial_id, {"val_accuracy": 0.1}, step=0)
    assert answer.status == "STOPPED"
    assert oracle.trials[second.trial_id].status == "RUNNING"


def test_a_pruner_with_hyperband_is_refused_naming_the_key(make_config):
    with pytest.raises(ConfigError, match=r"pruner.*hyperband"):
        validate(make_config(["tuner=hyperband", "pruner=asha"]))
    with pytest.raises(ConfigError, match=r"tuner\.executions_per_trial"):
        validate(make_config(["pruner=median", "tuner.executions_per_trial=2"]))
    with pytest.raises(ConfigError, match=r"pruner\.reduction_factor"):
        validate(make_config(["pruner=asha", "pruner.reduction_factor=1"]))


@pytest.mark.slow
def test_an_agent_is_pruned_by_its_chief(tmp_path, processes):
    from test_agents import printed_agent_command, start_agent, start_chief

    asha = ("pruner=asha", "pruner.min_epochs=2", "pruner.reduction_factor=2", "pruner.warmup_trials=1")
    chief = start_chief(tmp_path, processes, *TWO_SPEEDS, *asha, "tuner.pack=1")
    agent = start_agent(printed_agent_command(chief), tmp_path, processes, "agent")
    assert chief.wait() == 0, chief.output()[-3000:]
    assert agent.wait(60) == 0, agent.output()[-3000:]
    runs = trial_runs(sqlite_uri(tmp_path / "mlruns"))
    pruned = [r for r in runs if "sweeplab.pruned" in r.data.tags]
    assert pruned and all(r.data.params["learning_rate"] == "1e-07" for r in pruned), [r.data.tags for r in runs]
    assert all(r.info.status == "FINISHED" and r.data.tags["sweeplab.worker"].startswith("agent-") for r in runs)
    assert ", pruned" in agent.output()
