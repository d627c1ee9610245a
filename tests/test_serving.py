"""What a sweep produces works outside sweeplab: logged and registered models take
raw inputs (their preprocessing is inside them) and score what sweeplab logged,
through mlflow.pyfunc and MLflow's own scoring server; runs carry their TensorBoard
logs (and their data lineage: test_search.py); a store deleted or swapped starts searches afresh."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TINY, free_port, serving
from mlflow import MlflowClient
from processes import env
from stores import sqlite_uri

from sweeplab.app import run
from sweeplab.config.validation import validate
from sweeplab.data import datasets

REGISTERED = "served-ensemble"


def raw_test_split(cfg):
    """The test split as the data file holds it: what a user of the model has."""
    app_cfg = validate(cfg)
    return datasets.load(app_cfg.data, app_cfg.seed).test


def test_registered_ensemble_served_over_rest_scores_the_logged_accuracy(store, make_config, tmp_path):
    import mlflow

    overrides = [*TINY, *store["overrides"], f"ensemble.registered_model={REGISTERED}"]
    cfg = make_config(overrides)
    result = run(cfg)
    client = MlflowClient(store["uri"])
    logged = client.get_run(result.ensemble_run_id).data.metrics["ensemble_test_accuracy"]
    test = raw_test_split(cfg)
    # The pixels as scikit-learn ships them (0..16), not standardized.
    assert test.x.max() > 1

    # The registry alias, through mlflow.pyfunc...
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED}@champion")
    accuracy = np.mean(np.asarray(model.predict(test.x)).argmax(axis=1) == test.y)
    assert accuracy == pytest.approx(logged, abs=1e-6)

    # ...and MLflow's scoring server, called over HTTP as a client would.
    port = free_port()
    command = [
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{REGISTERED}/1",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        port,
    ]
    with serving(command, port, tmp_path / "serve.log") as _:
        body = json.dumps({"inputs": test.x.tolist()}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = np.asarray(json.load(response)["predictions"])
    assert predictions.shape == (len(test.y), 10)
    assert np.mean(predictions.argmax(axis=1) == test.y) == pytest.approx(logged, abs=1e-6)


def test_multi_input_ensemble_predicts_both_heads_from_a_dict(store, make_config):
    import mlflow

    overrides = ["sweep=multi_output", *TINY, *store["overrides"], "ensemble.registered_model=null"]
    cfg = make_config(overrides)
    result = run(cfg)
    test = raw_test_split(cfg)
    assert set(test.x) == {"chemistry", "color"}
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"runs:/{result.ensemble_run_id}/model")
    outputs = model.predict(test.x)
    assert set(outputs) == {"cultivar", "alcohol"}
    assert outputs["cultivar"].shape == (len(test), 3) and outputs["alcohol"].shape == (len(test), 1)
    metrics = MlflowClient(store["uri"]).get_run(result.ensemble_run_id).data.metrics
    accuracy = np.mean(outputs["cultivar"].argmax(axis=1) == test.y["cultivar"])
    assert accuracy == pytest.approx(metrics["ensemble_test_cultivar_accuracy"], abs=1e-6)
    mae = np.mean(np.abs(outputs["alcohol"][:, 0] - test.y["alcohol"]))
    assert mae == pytest.approx(metrics["ensemble_test_alcohol_mae"], rel=1e-4)


def _table(path: Path, kind: str) -> list[str]:
    """Two classes told apart by features of very different scales: unscaled inputs would not train."""
    rng = np.random.default_rng(0)
    label = np.repeat([0, 1], 60)
    big = rng.normal(1000 + 40 * label, 15)
    small = rng.normal(0.01 * label, 0.004)
    if kind == "csv":
        rows = ["big,small,label"] + [f"{b},{s},{y}" for b, s, y in zip(big, small, label)]
        path.write_text("\n".join(rows) + "\n")
        return [
            "data=csv",
            f"data.path={path}",
            "data.inputs={features: [big, small]}",
            "data.targets={label: classification}",
        ]
    np.savez(path, x=np.stack([big, small], axis=1).astype("float32"), label=label)
    return ["data=npz", f"data.path={path}", "data.inputs={features: x}", "data.targets={label: classification}"]


@pytest.mark.parametrize("kind", ["csv", "npz"])
def test_a_trial_model_on_a_users_file_scores_raw_rows(kind, store, make_config, tmp_path):
    import mlflow

    overrides = [*TINY, *store["overrides"], "ensemble=none", *_table(tmp_path / f"table.{kind}", kind)]
    cfg = make_config(overrides)
    result = run(cfg)
    test = raw_test_split(cfg)
    assert test.x.max() > 900  # rows as the file holds them
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"runs:/{result.best_run_id}/model")
    accuracy = np.mean(np.asarray(model.predict(test.x)).argmax(axis=1) == test.y)
    logged = MlflowClient(store["uri"]).get_run(result.best_run_id).data.metrics["test_accuracy"]
    assert accuracy == pytest.approx(logged, abs=1e-6)
    # The lineage names the file the rows came from.
    inputs = MlflowClient(store["uri"]).get_run(result.best_run_id).inputs.dataset_inputs
    assert {json.loads(i.dataset.source)["uri"] for i in inputs} == {(tmp_path / f"table.{kind}").as_uri()}


def test_tensorboard_logs_one_folder_per_trial_and_logs_it_to_the_trial_run(store, make_config, tmp_path):
    overrides = [*TINY, *store["overrides"], "ensemble=none", "trainer.tensorboard=true"]
    result = run(make_config(overrides))
    client = MlflowClient(store["uri"])
    trials = client.search_runs([result.experiment_id], "tags.`sweeplab.role` = 'trial'")
    folders = list((tmp_path / "state").rglob("tensorboard"))
    assert len(folders) == 1
    assert sorted(p.name for p in folders[0].iterdir()) == sorted(t.data.tags["sweeplab.trial_id"] for t in trials)
    for trial in trials:
        local = Path(client.download_artifacts(trial.info.run_id, "tensorboard", str(tmp_path / trial.info.run_id)))
        assert list(local.rglob("events.out.tfevents.*")), f"no TensorBoard events logged for {trial.info.run_name}"


def _finished_trials(client, result) -> int:
    return len(
        client.search_runs(
            [result.experiment_id],
            f"tags.`sweeplab.role` = 'trial' and tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
            " and attributes.status = 'FINISHED'",
        )
    )


def test_another_store_or_a_deleted_one_starts_the_search_afresh(store, make_config, tmp_path, capsys):
    overrides = [*TINY, *store["overrides"], "ensemble=none"]
    first = run(make_config(overrides))
    other = sqlite_uri(tmp_path / "other")
    capsys.readouterr()
    again = run(make_config([*overrides, f"tracking.uri={other}"]))
    assert "no run of search" in capsys.readouterr().out
    assert again.finished == 2 and _finished_trials(MlflowClient(other), again) == 2
    # Coming back to the first store resumes its search: nothing is trained again.
    back = run(make_config(overrides))
    assert back.parent_run_id == first.parent_run_id and _finished_trials(MlflowClient(store["uri"]), back) == 2

    shutil.rmtree(tmp_path / "mlruns")  # the natural way to start over; .sweeplab state stays
    # A new process, as a user's next command (this one keeps the deleted database open).
    afresh = subprocess.run(
        [sys.executable, "-m", "sweeplab", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env(),
    )
    assert afresh.returncode == 0, afresh.stderr[-3000:]
    assert afresh.stdout.count("no run of search") == 1
    # Another URI of the same file: this process's MLflow still holds the deleted one open by the first.
    client = MlflowClient(f"{store['uri']}?timeout=30")
    experiment_id = client.get_experiment_by_name("sweeplab").experiment_id
    (search,) = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'search'")
    assert search.info.run_id != first.parent_run_id
    assert _finished_trials(client, SimpleNamespace(experiment_id=experiment_id, parent_run_id=search.info.run_id)) == 2
