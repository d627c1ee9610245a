"""Model families: the lab variants as built, hand-checked parameter counts, one tracked
search per family (model read back from MLflow), multi-output heads, and bad
input refused before any MLflow run exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY

from sweeplab.config.validation import validate
from sweeplab.errors import ConfigError, DataError
from sweeplab.models.mlp_variant import variant_spec

ONE_TRIAL = ["tuner.max_trials=1", "trainer.epochs=1", "trainer.verbose=0"]


# --- the lab variants, as built ---------------------------------------------

# README, "The lab variants": depth 1..4 by blocks of five; odd N tanh + Glorot + batch
# norm before the activation, even N sigmoid + He + batch norm after.
DEPTH = {
    1: 1,
    2: 1,
    3: 1,
    4: 1,
    5: 1,
    6: 2,
    7: 2,
    8: 2,
    9: 2,
    10: 2,
    11: 3,
    12: 3,
    13: 3,
    14: 3,
    15: 3,
    16: 4,
    17: 4,
    18: 4,
    19: 4,
    20: 4,
}
ODD = ("tanh", "GlorotUniform", ["Dense", "BatchNormalization", "Activation"])
EVEN = ("sigmoid", "HeNormal", ["Dense", "Activation", "BatchNormalization"])


@pytest.fixture(scope="module")
def digits():
    return load_data()


def layer_chain(model, output_name: str) -> list:
    """The layers from the model's input to `output_name`, in the order data flows through them."""
    chain = [model.get_layer(output_name)]
    while type(chain[-1]).__name__ != "InputLayer":
        chain.append(chain[-1].input._keras_history.operation)
    return chain[::-1]


@pytest.mark.parametrize("n", sorted(DEPTH))
def test_built_lab_variant_follows_the_spec(n, digits):
    """The BUILT net of variant n: how many hidden Dense layers, their activation, kernel
    initializer and where batch norm sits (between Dense and activation, or after it),
    read from the layer graph; inputs standardized; 10 sigmoid outputs."""
    activation, initializer, block = ODD if n % 2 else EVEN
    model = build("mlp_variant", digits, variant=n)
    chain = layer_chain(model, "digit")
    kinds = [type(layer).__name__ for layer in chain]
    first_dense = kinds.index("Dense")
    assert "Normalization" in kinds[:first_dense]  # standardized before the first hidden layer
    hidden, output = chain[first_dense:-1], chain[-1]
    assert [type(layer).__name__ for layer in hidden] == block * DEPTH[n]
    denses = [layer for layer in hidden if type(layer).__name__ == "Dense"]
    for dense in denses:
        assert dense.units == 25
        assert type(dense.kernel_initializer).__name__ == initializer
        assert dense.activation.__name__ == "linear"  # the activation is its own layer
        assert dense.use_bias == (block[1] != "BatchNormalization")  # no bias when BN follows at once
    for layer in hidden:
        if type(layer).__name__ == "Activation":
            assert layer.activation.__name__ == activation
    # No other Dense anywhere: the hidden ones and the output.
    assert sum(type(layer).__name__ == "Dense" for layer in model.layers) == DEPTH[n] + 1
    assert (output.units, output.activation.__name__) == (10, "sigmoid")


@pytest.mark.parametrize("n", [0, 21])
def test_unknown_variant_is_a_config_error_naming_the_key(n, make_config):
    with pytest.raises(ConfigError) as err:
        variant_spec(n)
    assert err.value.key == "model.variant"
    with pytest.raises(ConfigError) as err:
        validate(make_config(["model=mlp_variant", f"model.variant={n}"]))
    assert err.value.key == "model.variant" and err.value.value == n


# --- builds and hand-checked parameter counts ------------------------------


def load_data(name="digits"):
    from sweeplab.config.schema import DataConfig
    from sweeplab.data import datasets as data

    return data.load(DataConfig(name=name), seed=0)


def build(family_name, dataset, overrides=(), **values):
    from sweeplab.config.validation import typed
    from sweeplab.models import get_family

    family = get_family(family_name)
    cfg = typed(family.Config, dict(overrides), "model")
    defaults = {name: rule.default for name, rule in family.HYPERPARAMETERS.items()}
    return family.build({**defaults, **values}, dataset, cfg)


# Normalization keeps mean and variance per feature plus a count: 64 + 64 + 1 for digits.
NORM_DIGITS = 129


@pytest.mark.parametrize(
    "variant, expected",
    [
        # Dense 64->25 without bias (BN follows), BN 4x25, output 25x10+10.
        (1, NORM_DIGITS + 64 * 25 + 4 * 25 + 25 * 10 + 10),
        # BN after the activation: the Dense keeps its bias.
        (2, NORM_DIGITS + 64 * 25 + 25 + 4 * 25 + 25 * 10 + 10),
        # Four layers, BN after: first 64->25, then three 25->25.
        (16, NORM_DIGITS + (64 * 25 + 25 + 100) + 3 * (25 * 25 + 25 + 100) + 25 * 10 + 10),
    ],
)
def test_mlp_variant_parameter_count(variant, expected):
    model = build("mlp_variant", load_data(), variant=variant)
    assert model.count_params() == expected


def test_inception_parameter_count():
    # Per module, 7 convs with bias from 1 channel to 2: 1x1: 1*2+2 = 4 (x4), 3x3: 9*2*2+2 = 38 (x3).
    # Concatenation: 4 branches x 2 = 8 channels; head 8*10+10.
    model = build("inception", load_data(), modules=1, filters=2, batch_norm=False)
    assert model.count_params() == 4 * 4 + 3 * 38 + 8 * 10 + 10
    concat = model.get_layer("inception1_concat")
    assert concat.output.shape[-1] == 8


@pytest.mark.parametrize(
    "separable, convs",
    [
        # conv1 3x3 1->2, conv2 3x3 2->2, no bias (BN follows).
        (False, 9 * 1 * 2 + 9 * 2 * 2),
        # depthwise 3x3 per channel + pointwise 1x1.
        (True, (9 * 1 + 1 * 2) + (9 * 2 + 2 * 2)),
    ],
)
def test_residual_conv_parameter_count(separable, convs):
    # Two BN of 2 channels (4 weights each), a 1x1 projection 1->2 (channels differ), head 2*10+10.
    model = build("residual", load_data(), blocks=1, filters=2, kernel_size=3, separable=separable)
    assert model.count_params() == convs + 2 * 4 * 2 + 1 * 2 + 2 * 10 + 10
    assert "block1_projection" in [layer.name for layer in model.layers]


def test_residual_dense_blocks_on_vector_data():
    # wine_multi: 10 + 2 inputs concatenated = 12; projection 12*4, dense 12*4 and 4*4,
    # two BN 4*4 each; heads cultivar 4*3+3 and alcohol 4+1.
    model = build("residual", load_data("wine_multi"), blocks=1, filters=4)
    assert model.count_params() == 12 * 4 + 12 * 4 + 4 * 4 + 2 * 16 + (4 * 3 + 3) + (4 + 1)


def test_multi_output_parameter_count_and_auxiliary_merge():
    # Trunk: chemistry 10->4 with bias; color (2) concatenated -> 6; heads 6*3+3 and 6+1.
    model = build("multi_output", load_data("wine_multi"), layers=1, units=4)
    assert model.count_params() == 10 * 4 + 4 + (6 * 3 + 3) + (6 + 1)
    assert model.get_layer("merge_auxiliary").output.shape[-1] == 6
    assert sorted(model.output_names) == ["alcohol", "cultivar"]


def test_multi_output_heads_reach_compile(make_config):
    from sweeplab.data import datasets as data_module
    from sweeplab.models import get_family
    from sweeplab.search.tuning import SweepHyperModel

    cfg = validate(make_config(["sweep=multi_output"]))
    dataset = data_module.load(cfg.data, cfg.seed)
    model = SweepHyperModel(get_family(cfg.family), cfg, dataset).build_with(cfg.space.defaults())
    compiled = model.get_compile_config()
    assert compiled["loss"] == {"cultivar": "sparse_categorical_crossentropy", "alcohol": "mean_squared_error"}
    assert compiled["loss_weights"] == {"cultivar": 1.0, "alcohol": 0.1}
    assert compiled["metrics"] == {"cultivar": ["accuracy"], "alcohol": ["mae"]}


# --- one tracked search per family, model read back from MLflow ------------


def trial_runs(result):
    from mlflow import MlflowClient

    from sweeplab.tracking.queries import trial_runs

    client = MlflowClient(tracking_uri=result.tracking_uri)
    return client, trial_runs(client, result.experiment_id, result.parent_run_id)


def load_logged(run_id):
    import mlflow

    return mlflow.pyfunc.load_model(f"runs:/{run_id}/model")


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=inception", "tuner=random", "model.space.modules=1", "model.space.filters=4"],
        ["model=residual", "tuner=hyperband", "tuner.max_epochs=1", "model.space.blocks=1", "model.space.filters=4"],
        [
            "model=residual",
            "data=wine_multi",
            "tuner=grid",
            "tuner.objective=val_cultivar_accuracy",
            "model.space.blocks=1",
        ],
    ],
    ids=["inception-random-digits", "residual-hyperband-digits", "residual-grid-wine"],
)
def test_family_search_logs_a_loadable_model(overrides, store, make_config):
    from sweeplab.app import run

    result = run(make_config([*ONE_TRIAL, *store["overrides"], *overrides]))
    client, runs = trial_runs(result)
    assert runs
    trial = runs[0]
    assert {"final_val_loss", "test_loss", "param_count", "epochs_trained"} <= set(trial.data.metrics)
    model = load_logged(trial.info.run_id)
    from sweeplab.data import datasets as data_module

    cfg = validate(make_config([*ONE_TRIAL, *store["overrides"], *overrides]))
    example = data_module.load(cfg.data, cfg.seed).test.take(3).x
    predictions = model.predict(example)
    assert len(predictions if not isinstance(predictions, dict) else next(iter(predictions.values()))) == 3


def test_lab7_variants_compares_every_variant(store, make_config, capsys):
    from sweeplab.app import run

    overrides = [
        "sweep=lab7_variants",
        "model.space.variant={type: int, min: 1, max: 2, step: 1, default: 1}",
        "tuner.max_trials=2",
        "trainer.epochs=1",
        "trainer.verbose=0",
        *store["overrides"],
    ]
    result = run(make_config(overrides))
    client, runs = trial_runs(result)
    assert sorted(r.data.params["variant"] for r in runs) == ["1", "2"]
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"comparison.txt", "comparison.csv", "comparison.png"} <= artifacts
    for run_ in runs:
        assert "learning_curves.png" in {a.path for a in client.list_artifacts(run_.info.run_id)}
    printed = capsys.readouterr().out
    assert "Comparison by variant (2 trials)" in printed
    assert "val_accuracy" in printed and "param_count" in printed
    # MSE on one-hot targets with sigmoid outputs: the model predicts 10 scores per digit.
    model = load_logged(runs[0].info.run_id)
    from sweeplab.data import datasets as data_module

    example = data_module.load(validate(make_config(overrides)).data, 42).test.take(2).x
    assert np.asarray(model.predict(example)).shape == (2, 10)


def test_multi_output_search_logs_every_head(store, make_config):
    from sweeplab.app import run

    overrides = ["sweep=multi_output", *ONE_TRIAL, *store["overrides"]]
    result = run(make_config(overrides))
    client, runs = trial_runs(result)
    metrics = runs[0].data.metrics
    for name in ("final_val_cultivar_accuracy", "final_val_alcohol_mae", "test_cultivar_loss", "test_alcohol_mae"):
        assert name in metrics
    history = client.get_metric_history(runs[0].info.run_id, "val_cultivar_accuracy")
    assert len(history) == 1
    from sweeplab.data import datasets as data_module

    cfg = validate(make_config(overrides))
    example = data_module.load(cfg.data, cfg.seed).test.take(4).x
    predictions = load_logged(runs[0].info.run_id).predict(example)
    assert set(predictions) == {"cultivar", "alcohol"}
    assert np.asarray(predictions["cultivar"]).shape == (4, 3)
    assert np.asarray(predictions["alcohol"]).shape == (4, 1)


# --- bad input: a clear error and no MLflow store at all -------------------


def assert_no_store(tmp_path: Path):
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(
    "overrides, error, says",
    [
        (["model=mlp_variant", "model.variant=0"], ConfigError, "model.variant"),
        (["model=mlp_variant", "model.variant=21"], ConfigError, "model.variant"),
        (["sweep=multi_output", "tuner.objective=val_accuracy"], ConfigError, "val_cultivar_accuracy"),
        (["sweep=multi_output", "tuner.objective=val_colour_mae"], ConfigError, "tuner.objective"),
        (["model=inception", "data=wine_multi"], DataError, "model=inception needs one image input"),
        (["model=multi_output", "+model.heads.label={loss: huber}"], ConfigError, "model.heads.label"),
    ],
)
def test_bad_input_fails_before_any_run(overrides, error, says, no_store, make_config, tmp_path):
    from sweeplab.app import run

    with pytest.raises(error, match=says.replace(".", r"\.")):
        run(make_config([*TINY, *no_store["overrides"], *overrides]))
    assert_no_store(tmp_path)


@pytest.mark.parametrize("problem", ["missing column", "non-numeric"])
def test_bad_csv_fails_before_any_run(problem, no_store, make_config, tmp_path):
    from sweeplab.app import run

    table = tmp_path / "table.csv"
    rows = ["a,b,label"] + [f"{i},{i % 5},{i % 2}" for i in range(30)]
    if problem == "non-numeric":
        rows[3] = "2,two,0"
    table.write_text("\n".join(rows) + "\n")
    columns = "[a, c]" if problem == "missing column" else "[a, b]"
    overrides = [
        "data=csv",
        f"data.path={table}",
        f"data.inputs={{features: {columns}}}",
        "data.targets={label: classification}",
    ]
    with pytest.raises(DataError, match="'c'" if problem == "missing column" else "'two'"):
        run(make_config([*TINY, *no_store["overrides"], *overrides]))
    assert_no_store(tmp_path)
