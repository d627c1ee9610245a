"""Trial costs and constraints: every trial logs `params` and `latency_ms`; a model outside
`tuner.constraints` known once built is never fit (its run FINISHED, tagged why), one outside
known only once trained is tagged and left out of leaderboards and ensembles; an ensemble built
under a budget keeps within it, and the champion alias moves only to a version that does."""

from __future__ import annotations

import pytest
from conftest import FIXED_MLP, TINY
from mlflow import MlflowClient
from stores import sqlite_uri

from sweeplab.app import run
from sweeplab.errors import ConfigError
from sweeplab.tracking import model_cost

# The mlp at one point, only its width searched: 64 inputs -> units -> 10 classes.
FIXED_BUT_UNITS = [
    *[o for o in FIXED_MLP if not o.startswith("model.space.units")],
    "model.space.learning_rate=0.003",
    "model.space.units.default=16",
    "tuner=grid",
]
TWO_WIDTHS = [*FIXED_BUT_UNITS, "model.space.units.step=112"]  # 16 and 128 units
PARAMS = {str(units): 64 * units + units + units * 10 + 10 for units in (16, 32, 48, 64, 128)}


def trials(uri: str, experiment_id: str, status: str = "FINISHED") -> dict:
    runs = MlflowClient(uri).search_runs(
        [experiment_id], f"tags.`sweeplab.role` = 'trial' and attributes.status = '{status}'"
    )
    return {r.data.params["units"]: r for r in runs}


def search(tmp_path, make_config, name: str, *overrides: str):
    uri = sqlite_uri(tmp_path / name)
    cfg = make_config([*TINY, f"tracking.uri={uri}", f"state_dir={tmp_path / name / 'state'}", *overrides])
    return uri, run(cfg)


@pytest.mark.parametrize("pack", [1, 2])
def test_a_model_over_the_params_bound_is_never_fit_and_its_run_says_why(tmp_path, make_config, monkeypatch, pack):
    monkeypatch.chdir(tmp_path)
    uri, result = search(
        tmp_path, make_config, "bound", *TWO_WIDTHS, "ensemble=none", f"tuner.pack={pack}",
        "tuner.constraints.params.max=5000",
    )  # fmt: skip
    by_units = trials(uri, result.experiment_id)
    assert sorted(by_units) == ["128", "16"]  # both FINISHED: not training one is no failure of its run
    small, big = by_units["16"], by_units["128"]
    client = MlflowClient(uri)

    assert big.data.tags[model_cost.INFEASIBLE] == f"tuner.constraints: params {PARAMS['128']} > max 5000"
    # Never fit: no epoch was logged, nothing was evaluated or saved.
    assert client.get_metric_history(big.info.run_id, "loss") == []
    assert "final_val_accuracy" not in big.data.metrics
    assert {a.path for a in client.list_artifacts(big.info.run_id)} == set()

    assert model_cost.INFEASIBLE not in small.data.tags
    assert small.data.metrics["params"] == PARAMS["16"]
    assert 0 < small.data.metrics["latency_ms"] < 1000
    assert len(client.get_metric_history(small.info.run_id, "loss")) == 2
    assert (result.finished, result.best_run_id) == (1, small.info.run_id)


def test_a_latency_bound_tags_trained_trials_and_keeps_them_out_of_leaderboard_and_ensemble(
    tmp_path, make_config, monkeypatch, capsys
):
    from sweeplab.ensemble.builder import Filters, candidate_runs

    monkeypatch.chdir(tmp_path)
    uri, result = search(
        tmp_path, make_config, "slow", *TWO_WIDTHS, "ensemble=none", "tuner.constraints.latency_ms.max=1.0e-6"
    )
    by_units = trials(uri, result.experiment_id)
    for trial in by_units.values():
        latency = trial.data.metrics["latency_ms"]
        assert trial.data.tags[model_cost.INFEASIBLE].startswith(f"tuner.constraints: latency_ms {latency:.4g} > max")
        assert len(MlflowClient(uri).get_metric_history(trial.info.run_id, "loss")) == 2  # trained
    assert "No finished trials. (2 infeasible: tuner.constraints)" in capsys.readouterr().out
    assert candidate_runs(MlflowClient(uri), result.experiment_id, "val_accuracy", True, Filters()) == []


def test_an_ensemble_under_a_budget_keeps_within_it_and_only_such_a_version_takes_the_champion_alias(
    tmp_path, make_config, monkeypatch
):
    from sweeplab.ensemble import builder

    monkeypatch.chdir(tmp_path)
    registered = "budget-ensemble"
    widths = "model.space.units.max=64"  # 16, 32, 48 and 64 units
    uri, result = search(
        tmp_path, make_config, "budget", *FIXED_BUT_UNITS, widths, "tuner.max_trials=4",
        f"ensemble.registered_model={registered}", "ensemble.top_k=4",
    )  # fmt: skip
    client = MlflowClient(uri)
    costs = {r.info.run_id: r.data.metrics["params"] for r in trials(uri, result.experiment_id).values()}
    # Built without a budget, and registered: the champion, whatever it costs.
    assert client.get_model_version_by_alias(registered, "champion").run_id == result.ensemble_run_id

    budget = PARAMS["16"] + PARAMS["32"]  # the two smallest together at most
    under = builder.build(client, result.experiment_id, top_k=4, registered_model=registered, budget={"params": budget})
    members = [m.run_id for m in under.members]
    assert sum(costs[m] for m in members) <= budget
    ensemble_run = client.get_run(under.run_id)
    assert ensemble_run.data.metrics["ensemble_params"] == sum(costs[m] for m in members)
    assert float(ensemble_run.data.params["ensemble.max_params"]) == budget
    # The champion built without a budget has no cost summed: the version within it takes the alias.
    assert client.get_model_version_by_alias(registered, "champion").run_id == under.run_id

    # A tighter budget: only the smallest model fits, and the champion is a version within the budget.
    tight = {"params": PARAMS["16"]}
    alone = builder.build(client, result.experiment_id, top_k=4, registered_model=registered, budget=tight)
    assert [m.run_id for m in alone.members] == [r for r, p in costs.items() if p == PARAMS["16"]]
    champion = client.get_model_version_by_alias(registered, "champion")
    assert builder.within_budget(client.get_run(champion.run_id), tight)


def test_a_budgeted_greedy_selection_never_adds_a_member_it_cannot_afford():
    import numpy as np

    from sweeplab.ensemble import selection

    labels = {"output": np.zeros(4, dtype="int64")}
    a = {"output": np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])}
    b = {"output": np.array([[0.4, 0.6], [0.4, 0.6], [0.9, 0.1], [0.9, 0.1]])}
    free = selection.select([a, b], labels, "val_accuracy", True)
    np.testing.assert_allclose(free.weights, [0.5, 0.5])  # together they are right everywhere
    budget = selection.Budget({"params": 150}, [{"params": 100}, {"params": 100}])
    tight = selection.select([a, b], labels, "val_accuracy", True, budget=budget)
    np.testing.assert_allclose(tight.weights, [1.0, 0.0])


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("+tuner.constraints.flops={max: 1}", "tuner.constraints.flops", "a bound on one of ['params', 'latency_ms']"),
        ("+tuner.constraints.params.most=1", "tuner.constraints.params.most", "one of the keys ['min', 'max']"),
        ("tuner.constraints.params.max=lots", "tuner.constraints.params.max", "null (no bound) or a number"),
        ("tuner.constraints.params={min: 5, max: 1}", "tuner.constraints.params.min", "a number <= "),
        ("ensemble.max_params=0", "ensemble.max_params", "null (no budget) or a number > 0"),
        ("ensemble.max_latency_ms=-1", "ensemble.max_latency_ms", "null (no budget) or a number > 0"),
    ],
)
def test_bad_constraints_and_budgets_name_the_key_and_what_is_expected(make_config, override, key, expected):
    from sweeplab.config.validation import validate

    with pytest.raises(ConfigError) as raised:
        validate(make_config([override]))
    assert raised.value.key == key and expected in raised.value.expected


def test_constraints_bound_exactly_the_metrics_trials_log():
    from sweeplab.config.validation import CONSTRAINED

    assert set(CONSTRAINED) == set(model_cost.COST_METRICS)
