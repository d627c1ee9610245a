"""Warm start (`tuner.warm_start`): a search's oracle holds an earlier search's finished trials as
completed ones, proposes none of them again and trains none of them again, except the best
`tuner.warm_start_top`, which it trains first."""

from __future__ import annotations

import keras_tuner as kt
import pytest
from conftest import FIXED_MLP, TINY
from mlflow import MlflowClient

from sweeplab.app import run
from sweeplab.config.validation import validate
from sweeplab.errors import ConfigError
from sweeplab.search import warm_start

# Six points in all (two widths x three learning rates): two searches of three trials each, with the
# same tuner seed, would repeat points unless the second knows the first's.
SIX_POINTS = [
    *FIXED_MLP,
    "model.space.units={type: choice, values: [8, 16], default: 16}",
    "model.space.learning_rate={type: choice, values: [0.001, 0.003, 0.01], default: 0.003}",
    "trainer.epochs=1",
    "tuner.max_trials=3",
    "ensemble=none",
]


def search(store, make_config, experiment: str, *overrides: str):
    run(make_config([*TINY, *store["overrides"], *SIX_POINTS, f"tracking.experiment={experiment}", *overrides]))
    client = MlflowClient(store["uri"])
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    trials = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'trial'")
    (search_run,) = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'search'")
    return trials, search_run


def point(trial) -> tuple[str, str]:
    return trial.data.params["units"], trial.data.params["learning_rate"]


def test_a_warm_started_bayesian_search_proposes_none_of_the_earlier_trials(store, make_config, capsys):
    first, _ = search(store, make_config, "first", "tuner=random")
    second, search_run = search(
        store, make_config, "second", "tuner=bayesian", "tuner.num_initial_points=1", "tuner.warm_start=first"
    )
    assert len(first) == len(second) == 3
    assert not {point(t) for t in first} & {point(t) for t in second}  # the six points, each once
    assert search_run.data.tags["sweeplab.warm_start"] == "experiment 'first': 3 trials"
    assert "warm start from experiment 'first': 3 trials" in capsys.readouterr().out


def test_the_best_earlier_trials_are_trained_again_first(store, make_config):
    first, _ = search(store, make_config, "first", "tuner=random")
    best = max(first, key=lambda t: t.data.metrics["scored_val_accuracy"])
    second, _ = search(store, make_config, "second", "tuner=random", "tuner.warm_start=first", "tuner.warm_start_top=1")
    by_id = {t.data.tags["sweeplab.trial_id"]: t for t in second}
    assert point(by_id["0"]) == point(best)
    assert not {point(t) for t in first} & {point(by_id[i]) for i in ("1", "2")}


def _trial(space: kt.HyperParameters, values: dict, score: float):
    from keras_tuner.src.engine import trial as trial_module

    hyperparameters = space.copy()
    hyperparameters.values = values
    trial = trial_module.Trial(hyperparameters, trial_id=f"warm-{values}", status="COMPLETED")
    trial.score, trial.best_step = score, 0
    return trial


def test_the_gaussian_process_is_fitted_to_the_earlier_trials_too(tmp_path):
    oracle = kt.oracles.BayesianOptimizationOracle(
        objective=kt.Objective("val_accuracy", "max"), max_trials=5, num_initial_points=2, seed=1
    )
    oracle._set_project_dir(str(tmp_path), "search")
    oracle.hyperparameters.Choice("units", [8, 16, 32])
    space = oracle.get_space()
    earlier = [_trial(space, {"units": u}, s) for u, s in ((8, 0.5), (16, 0.9))]
    warm_start.hold(oracle, earlier, top=0)
    # Two completed trials (none of its own): past its initial random points, and never one of them.
    trial = oracle.create_trial("tuner0")
    assert oracle.gpr.X_train_.shape[0] == 2  # fitted to the earlier two
    assert trial.hyperparameters.values == {"units": 32}
    assert set(oracle.trials) == {trial.trial_id}  # its own trials stay its own


def test_runs_of_another_space_or_not_fully_trained_are_skipped_and_counted(store):
    client = MlflowClient(store["uri"])
    experiment_id = client.create_experiment("earlier")
    space = kt.HyperParameters()
    space.Choice("units", [8, 16])
    space.Float("learning_rate", 1e-4, 1e-2)

    def trial_run(params: dict, metrics: dict, tags: dict | None = None):
        created = client.create_run(experiment_id, tags={"sweeplab.role": "trial", **(tags or {})})
        for key, value in params.items():
            client.log_param(created.info.run_id, key, value)
        for key, value in metrics.items():
            client.log_metric(created.info.run_id, key, value)
        client.set_terminated(created.info.run_id)

    trial_run({"units": "16", "learning_rate": "0.001"}, {"scored_val_accuracy": 0.9})
    trial_run({"units": "16", "learning_rate": "0.001", "layers": "2"}, {"scored_val_accuracy": 0.8})  # other space
    trial_run({"units": "64", "learning_rate": "0.001"}, {"scored_val_accuracy": 0.8})  # not in the space
    trial_run({"units": "8", "learning_rate": "0.002"}, {"scored_val_accuracy": 0.4}, {"sweeplab.pruned": "2"})
    runs, described = warm_start.previous_runs(client, "earlier")
    trials, skipped = warm_start.as_trials(runs, space, "val_accuracy")
    assert described == "experiment 'earlier'" and skipped == 3
    assert [t.hyperparameters.values for t in trials] == [{"units": 16, "learning_rate": 0.001}]
    with pytest.raises(ConfigError, match="tuner.warm_start"):
        warm_start.previous_runs(client, "no-such-experiment")


def test_warm_start_settings_are_checked(make_config):
    with pytest.raises(ConfigError, match="tuner.warm_start"):
        validate(make_config(["tuner=grid", "tuner.warm_start=earlier"]))
    with pytest.raises(ConfigError, match="tuner.warm_start"):
        validate(make_config(["tuner.warm_start_top=2"]))
