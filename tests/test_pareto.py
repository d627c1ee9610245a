"""The Pareto front: a real tiny search logs pareto.csv and pareto.png to its run and tags exactly the
trials no other trial beats on validation accuracy without more parameters; `pareto` is checked."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import FIXED_MLP, TINY
from mlflow import MlflowClient
from stores import sqlite_uri

from sweeplab.app import run
from sweeplab.errors import ConfigError
from sweeplab.report import pareto

# Widths and learning rates vary: accuracy and size trade off, and some trials are beaten on both.
WIDTHS_AND_RATES = [
    *[o for o in FIXED_MLP if not o.startswith("model.space.units")],
    "model.space.units.max=64",
    "tuner.max_trials=6",
    "ensemble=none",
]


def test_a_search_logs_its_pareto_front_and_tags_exactly_the_trials_on_it(tmp_path, make_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = sqlite_uri(tmp_path)
    result = run(make_config([*TINY, *WIDTHS_AND_RATES, f"tracking.uri={uri}", f"state_dir={tmp_path / 'state'}"]))
    client = MlflowClient(uri)
    trials = client.search_runs([result.experiment_id], "tags.`sweeplab.role` = 'trial'")
    assert len(trials) == 6

    # The front computed here from the runs: no other trial at least as accurate with no more parameters.
    scores = {r.info.run_id: (r.data.metrics["final_val_accuracy"], r.data.metrics["params"]) for r in trials}
    front = {
        me
        for me, (acc, size) in scores.items()
        if not any(a >= acc and s <= size and (a, s) != (acc, size) for other, (a, s) in scores.items() if other != me)
    }
    assert 0 < len(front) < len(trials)  # a real trade-off: some trials are beaten
    tagged = {r.info.run_id for r in trials if r.data.tags.get(pareto.PARETO) == "true"}
    assert tagged == front

    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"pareto.csv", "pareto.png"} <= artifacts
    table = Path(client.download_artifacts(result.parent_run_id, "pareto.csv", str(tmp_path)))
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert {row["run_id"] for row in rows} == set(scores)
    assert {row["run_id"] for row in rows if row["pareto"] == "True"} == front
    for row in rows:
        assert float(row["params"]) == scores[row["run_id"]][1]

    # `sweeplab report` logs the front across the experiment's searches on its report run.
    from sweeplab.report.cli import main as report_main

    assert report_main(["--experiment", "sweeplab", "--tracking-uri", uri]) == 0
    (report,) = client.search_runs([result.experiment_id], "tags.`sweeplab.role` = 'report'")
    assert {"pareto.csv", "pareto.png"} <= {a.path for a in client.list_artifacts(report.info.run_id)}


def test_the_front_leaves_out_infeasible_trials_and_takes_every_goal_in_its_direction():
    class Run:
        def __init__(self, run_id, metrics, tags=None):
            self.info = type("Info", (), {"run_id": run_id})()
            self.data = type("Data", (), {"metrics": metrics, "tags": tags or {}})()

    runs = [
        Run("small", {"final_val_accuracy": 0.8, "params": 100}),
        Run("big", {"final_val_accuracy": 0.9, "params": 1000}),
        Run("worse", {"final_val_accuracy": 0.7, "params": 500}),
        Run("best_but_slow", {"final_val_accuracy": 0.95, "params": 50}, {"sweeplab.infeasible": "latency"}),
        Run("unmeasured", {"final_val_accuracy": 0.99}),
    ]
    found = pareto.points(runs, pareto.goals(None, "val_accuracy", True))
    assert {p.run.info.run_id: p.on_front for p in found} == {
        "small": True,
        "big": True,
        "worse": False,
        "best_but_slow": False,
    }
    by_size_up = pareto.points(runs, pareto.goals(["val_accuracy:min", "params:max"], "val_accuracy", True))
    assert {p.run.info.run_id for p in by_size_up if p.on_front} == {"worse", "big"}


@pytest.mark.parametrize(
    "override, key",
    [("pareto=[val_accuracy]", "pareto.0"), ("pareto=[val_accuracy:up,params:min]", "pareto.0"),
     ("pareto=[params:min]", "pareto"), ("pareto=[params:min,params:max]", "pareto.1")],
)  # fmt: skip
def test_a_bad_pareto_entry_names_its_key(make_config, override, key):
    from sweeplab.config.validation import validate

    with pytest.raises(ConfigError) as raised:
        validate(make_config([override]))
    assert raised.value.key == key
