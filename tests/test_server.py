"""A search tracked on a live MLflow tracking server (`tracking.uri=http://...`), its
artifacts proxied by the server (`--serve-artifacts`), read back over HTTP with MLflow's
own client: runs, epoch metrics, logged models, artifacts and a loadable ensemble."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, free_port, serving
from stores import sqlite_uri

PNG = b"\x89PNG\r\n\x1a\n"
REGISTERED = "served-search-ensemble"


@pytest.fixture
def server(tmp_path, monkeypatch):
    """`mlflow server` on a free port: a SQLite backend and an artifact folder under tmp_path."""
    from mlflow.tracking._tracking_service import utils

    # The search and mlflow.pyfunc set MLflow's global tracking URI (and MLFLOW_TRACKING_URI):
    # both are put back when the test ends, so no later test talks to a stopped server.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(utils, "_tracking_uri", utils._tracking_uri)
    monkeypatch.chdir(tmp_path)
    port = free_port()
    artifacts = tmp_path / "server-artifacts"
    command = [
        "mlflow",
        "server",
        "--backend-store-uri",
        sqlite_uri(tmp_path, "server.db"),
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts,
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--workers",
        "1",
    ]
    with serving(command, port, tmp_path / "server.log", timeout_s=180):
        yield {"uri": f"http://127.0.0.1:{port}", "artifacts": artifacts}


def _check_trial_over_http(client, trial) -> None:
    """A trial read back through the server: every epoch's metrics, final metrics, its logged model, its figure."""
    assert trial.info.status == "FINISHED"
    epochs = int(trial.data.metrics["epochs_trained"])
    assert 1 <= epochs <= 2  # trainer.epochs=2
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(trial.info.run_id, name)
        assert sorted(m.step for m in history) == list(range(epochs)), name
    assert {"final_val_accuracy", "test_accuracy"} <= set(trial.data.metrics)
    (output,) = trial.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert (logged.name, logged.source_run_id) == ("model", trial.info.run_id)
    assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(output.model_id)}
    assert {"learning_curves.png", "model_summary.txt", "predictions.npz"} <= {
        a.path for a in client.list_artifacts(trial.info.run_id)
    }
    # Downloaded through the server: the figure the trial logged.
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(client.download_artifacts(trial.info.run_id, "learning_curves.png", tmp))
        assert png.read_bytes()[:8] == PNG


def _check_ensemble_over_http(client, uri: str, cfg, ensemble_run_id: str) -> None:
    """The ensemble: loadable over HTTP, predicting raw digits with the accuracy it logged."""
    import mlflow

    from sweeplab.config.validation import validate
    from sweeplab.data import datasets

    ensemble = client.get_run(ensemble_run_id)
    assert ensemble.data.tags["sweeplab.role"] == "ensemble"
    recorded = ensemble.data.metrics["ensemble_test_accuracy"]
    assert client.get_model_version_by_alias(REGISTERED, "champion").run_id == ensemble_run_id
    app_cfg = validate(cfg)
    test = datasets.load(app_cfg.data, app_cfg.seed).test
    assert test.x.max() > 1  # pixels as scikit-learn ships them (0..16), not standardized
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"runs:/{ensemble_run_id}/model")
    predicted = np.asarray(model.predict(test.x))
    assert predicted.shape == (len(test.y), 10)
    assert float(np.mean(predicted.argmax(axis=1) == test.y)) == pytest.approx(recorded, abs=1e-6)


@pytest.mark.slow
def test_search_on_a_tracking_server_reads_back_over_http(server, make_config, tmp_path):
    from mlflow import MlflowClient

    from sweeplab.app import run

    uri = server["uri"]
    cfg = make_config(
        [
            *TINY,
            f"tracking.uri={uri}",
            f"state_dir={tmp_path / 'state'}",
            "tracking.experiment=served",
            f"ensemble.registered_model={REGISTERED}",
        ]
    )
    result = run(cfg)
    assert result.tracking_uri == uri
    assert result.ensemble_run_id

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("served")
    assert experiment.experiment_id == result.experiment_id
    # Artifacts go through the server, not to a path this process writes itself.
    assert experiment.artifact_location.startswith("mlflow-artifacts:")

    # The search run.
    search = client.get_run(result.parent_run_id)
    assert search.info.status == "FINISHED"
    assert (search.data.tags["sweeplab.role"], search.data.tags["sweeplab.family"]) == ("search", "mlp")
    assert search.data.metrics["trials_finished"] == 2
    assert "config.yaml" in {a.path for a in client.list_artifacts(search.info.run_id)}

    # Its trials: every epoch's metrics, final metrics, a logged model each.
    trials = client.search_runs(
        [experiment.experiment_id],
        f"tags.`sweeplab.role` = 'trial' and tags.`mlflow.parentRunId` = '{search.info.run_id}'",
    )
    assert sorted(t.data.tags["sweeplab.trial_id"] for t in trials) == ["0", "1"]
    for trial in trials:
        _check_trial_over_http(client, trial)
    # ...and the server stored them in its own artifact folder.
    assert len(list(server["artifacts"].rglob("learning_curves.png"))) == 2

    # The ensemble, read back and loaded over HTTP.
    _check_ensemble_over_http(client, uri, cfg, result.ensemble_run_id)
