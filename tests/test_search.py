"""A real search of 2 trials x 2 epochs on digits, read back through MLflow: its runs, metrics,
artifacts, models and data lineage, and the memory it hands back when it ends."""

import gc
import json

import mlflow
import numpy as np
import pytest
from conftest import TINY, compose_config
from mlflow import MlflowClient
from stores import sqlite_uri

from sweeplab.app import run
from sweeplab.config.validation import validate
from sweeplab.data import datasets as data_module

# `make check`'s one end-to-end search: every test here reads the same tiny search back.
pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """Run one tiny search for the whole module (training is the slow part)."""
    tmp = tmp_path_factory.mktemp("search")
    uri = sqlite_uri(tmp / "mlruns")
    overrides = [*TINY, f"tracking.uri={uri}", f"state_dir={tmp / 'state'}", "tracking.experiment=test-search"]
    cfg = compose_config(overrides)
    result = run(cfg, overrides=overrides)
    return result, cfg, MlflowClient(tracking_uri=uri)


def _children(client, result):
    return client.search_runs(
        [result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )


def test_one_parent_and_two_children(searched):
    result, _, client = searched
    runs = client.search_runs([result.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweeplab.role") == "search"]
    children = _children(client, result)
    assert len(parents) == 1 and parents[0].info.run_id == result.parent_run_id
    assert len(children) == 2
    assert {c.data.tags["sweeplab.role"] for c in children} == {"trial"}
    assert {c.data.tags["sweeplab.trial_id"] for c in children} == {"0", "1"}
    assert all(c.info.status == "FINISHED" for c in children)
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweeplab.family"] == "mlp"
    assert parent.data.tags["sweeplab.tuner"] == "random"
    assert parent.data.params["trainer.epochs"] == "2"
    assert parent.data.metrics["trials_finished"] == 2


def test_each_trial_logs_params_epoch_metrics_and_final_metrics(searched):
    result, cfg, client = searched
    for child in _children(client, result):
        params = child.data.params
        assert {"layers", "units", "activation", "initializer", "batch_norm", "dropout", "learning_rate"} <= set(params)
        epochs = int(child.data.metrics["epochs_trained"])
        assert 1 <= epochs <= 2
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            history = client.get_metric_history(child.info.run_id, name)
            assert [m.step for m in history] == list(range(epochs))
        for name in ("final_val_accuracy", "final_val_loss", "test_accuracy", "test_loss"):
            assert name in child.data.metrics
        assert 0.0 <= child.data.metrics["test_accuracy"] <= 1.0


def test_each_trial_logs_its_artifacts(searched):
    result, _, client = searched
    child = _children(client, result)[0]
    top = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"learning_curves.png", "model_summary.txt", "predictions.npz"} <= top
    # The model is the run's MLflow 3 logged model "model", with its final metrics linked to it.
    (output,) = child.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert (logged.name, logged.source_run_id, str(logged.status)) == ("model", child.info.run_id, "READY")
    model_files = {a.path for a in client.list_logged_model_artifacts(logged.model_id)}
    assert {"MLmodel", "input_example.json"} <= model_files
    linked = {m.key: m for m in logged.metrics or []}
    assert linked["test_accuracy"].value == child.data.metrics["test_accuracy"]
    assert linked["test_accuracy"].dataset_name == "digits-test"
    assert linked["final_val_accuracy"].dataset_name == "digits-val"
    parent_files = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"config.yaml", "search_progress.png"} <= parent_files


def test_logged_model_predicts_class_probabilities(searched):
    result, cfg, client = searched
    app_cfg = validate(cfg)
    dataset = data_module.load(app_cfg.data, app_cfg.seed)
    child = _children(client, result)[0]
    mlflow.set_tracking_uri(result.tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/model")
    assert model.metadata.signature is not None
    probabilities = np.asarray(model.predict(dataset.test.x))
    assert probabilities.shape == (len(dataset.test.x), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    # The logged model is the evaluated one: its accuracy is the recorded test accuracy.
    accuracy = float((probabilities.argmax(axis=1) == dataset.test.y).mean())
    assert accuracy == pytest.approx(child.data.metrics["test_accuracy"], abs=1e-6)


def test_search_and_trial_runs_record_the_data_they_used(searched):
    result, _, client = searched
    for run_id in (result.parent_run_id, result.best_run_id):
        inputs = client.get_run(run_id).inputs.dataset_inputs
        contexts = {i.tags[0].value: i.dataset for i in inputs}
        assert set(contexts) == {"training", "validation", "test"}
        assert contexts["test"].name == "digits-test"
        assert json.loads(contexts["test"].profile)["features_shape"] == {"image": [360, 8, 8, 1]}
        assert json.loads(contexts["training"].source)["tags"] == {"loader": "sklearn.datasets.load_digits"}
    # The same splits, so the same digests, in both runs.
    digests = [
        sorted(i.dataset.digest for i in client.get_run(r).inputs.dataset_inputs)
        for r in (result.parent_run_id, result.best_run_id)
    ]
    assert digests[0] == digests[1]


def test_the_search_leaves_nothing_frozen_out_of_the_garbage_collector(searched):
    """What a search moves out of the collector's reach for its trials is handed back when it ends."""
    assert gc.get_freeze_count() == 0


def test_the_best_trial_is_reported(searched):
    result, _, client = searched
    children = _children(client, result)
    best = max(children, key=lambda c: c.data.metrics["final_val_accuracy"])
    assert result.best_run_id == best.info.run_id
    assert result.best_score == pytest.approx(best.data.metrics["final_val_accuracy"])


def test_a_leaderboard_narrower_than_its_hyperparameters_leaves_some_out_to_fit(searched):
    from sweeplab.report.leaderboard import leaderboard

    result, _, client = searched
    runs = _children(client, result)
    full = leaderboard(runs, "val_accuracy").splitlines()
    limit = max(map(len, full)) - 20
    narrow = leaderboard(runs, "val_accuracy", width=limit).splitlines()
    assert max(map(len, narrow[1:-1])) <= limit < max(map(len, full))
    assert "test_accuracy" in narrow[1] and "hyperparameters left out to fit" in narrow[-1]
    assert leaderboard(runs, "val_accuracy", width=1000).splitlines() == full
