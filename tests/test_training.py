"""The fast training path: several steps per execution, tf.data fed once,
best epoch's weights kept in memory. A real tiny search, read back via MLflow."""

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from sweeplab.app import run
from sweeplab.config.validation import validate
from sweeplab.data import datasets as data_module
from sweeplab.errors import ConfigError
from sweeplab.search import training

# Long enough for the validation accuracy to go up and down; no early stop.
SEARCH = ["tuner.max_trials=1", "trainer.epochs=4", "trainer.verbose=0", "trainer.early_stopping.enabled=false"]


@pytest.mark.parametrize("best_weights", ["memory", "checkpoint"])
def test_logged_model_is_the_best_epoch(store, make_config, best_weights):
    overrides = [*SEARCH, *store["overrides"], f"trainer.best_weights={best_weights}"]
    result = run(make_config(overrides), overrides=overrides)
    client = MlflowClient(tracking_uri=store["uri"])
    (trial,) = client.search_runs(
        [result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    epochs = [m.value for m in client.get_metric_history(trial.info.run_id, "val_accuracy")]
    assert len(epochs) == 4
    assert trial.data.metrics["final_val_accuracy"] == pytest.approx(max(epochs), abs=1e-6)

    # The model MLflow holds scores the best epoch's validation accuracy too.
    cfg = validate(make_config(overrides))
    dataset = data_module.load(cfg.data, cfg.seed)
    model = mlflow.keras.load_model(f"runs:/{trial.info.run_id}/model")
    predicted = np.argmax(model.predict(dataset.val.x, verbose=0), axis=1)
    assert np.mean(predicted == dataset.val.y) == pytest.approx(max(epochs), abs=1e-6)
    # Keras Tuner's own checkpoint (read by get_best_models and on resume) exists.
    assert list(Path(cfg.state_dir).rglob("checkpoint.weights.h5"))


def test_steps_per_execution_reaches_the_compiled_model(make_config):
    cfg = validate(make_config(["trainer.steps_per_execution=7"]))
    dataset = data_module.load(cfg.data, cfg.seed)
    from sweeplab.models import get_family

    model = get_family(cfg.family).build(cfg.space.defaults(), dataset, cfg.model)
    training.compile_model(model, cfg.space.defaults(), dataset, cfg.trainer)
    assert model.steps_per_execution == 7


def test_fit_data_batches_every_sample_once_per_epoch(make_config):
    cfg = validate(make_config(["trainer.batch_size=50"]))
    dataset = data_module.load(cfg.data, cfg.seed)
    train, val = training.fit_data(dataset, cfg.trainer, cfg.seed)
    first = np.concatenate([y.numpy() for _, y in train])
    second = np.concatenate([y.numpy() for _, y in train])
    assert sorted(first) == sorted(dataset.train.y)
    assert not np.array_equal(first, second)  # reshuffled each epoch
    assert train.element_spec[0].shape[0] is None  # one trace for every batch size
    assert sum(len(y) for _, y in val) == len(dataset.val)


@pytest.mark.parametrize(
    "override,key",
    [
        ("trainer.steps_per_execution=0", "trainer.steps_per_execution"),
        ("trainer.best_weights=disk", "trainer.best_weights"),
    ],
)
def test_bad_fast_path_settings_name_the_key(make_config, override, key):
    with pytest.raises(ConfigError, match=key):
        validate(make_config([override]))
