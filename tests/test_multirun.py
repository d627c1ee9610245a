"""Hydra multiruns: one search per combination, all in one MLflow experiment."""

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from conftest import ROOT

TINY_CLI = ["++tuner.max_epochs=2", "tuner.max_trials=2", "trainer.epochs=2", "trainer.verbose=0"]


def _multirun(tmp_path, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        [sys.executable, "-m", "sweeplab", "-m", "tuner=random,hyperband", *TINY_CLI, "tracking.experiment=multi", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "database is locked" not in output
    assert "Traceback" not in output
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


def _check_one_experiment(client):
    experiment = client.get_experiment_by_name("multi")
    runs = client.search_runs([experiment.experiment_id])
    searches = [r for r in runs if r.data.tags.get("sweeplab.role") == "search"]
    assert sorted(r.data.tags["sweeplab.tuner"] for r in searches) == ["hyperband", "random"]
    assert all(r.info.status == "FINISHED" for r in searches)
    for search in searches:
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == search.info.run_id]
        assert trials and all(t.info.status == "FINISHED" for t in trials)
        assert "tuner=" in search.data.tags["sweeplab.overrides"]


@pytest.mark.slow
def test_multirun_over_tuners(tmp_path):
    _check_one_experiment(_multirun(tmp_path))


@pytest.mark.slow
def test_multirun_with_two_parallel_jobs(tmp_path):
    _check_one_experiment(_multirun(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"))
