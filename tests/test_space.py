"""The translation layer: space config -> Keras Tuner hp calls and plain values."""

import keras_tuner as kt
import pytest

from sweeplab.errors import ConfigError
from sweeplab.models import mlp
from sweeplab.space.hyperparameters import parse_space

SPACE = {
    "layers": {"type": "int", "min": 1, "max": 3, "default": 2},
    "units": {"type": "int", "min": 16, "max": 64, "step": 16},
    "dropout": {"type": "float", "min": 0.0, "max": 0.4, "step": 0.1, "default": 0.2},
    "learning_rate": {"type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"},
    "activation": {"type": "choice", "values": ["relu", "tanh"], "default": "tanh"},
    "standardize_inputs": {"type": "boolean", "default": True},
}


def test_every_type_becomes_the_matching_hp_call():
    space = parse_space(SPACE, mlp.HYPERPARAMETERS)
    hp = kt.HyperParameters()
    values = space.sample(hp)

    declared = {p.name: p for p in hp.space}
    assert isinstance(declared["layers"], kt.engine.hyperparameters.Int)
    assert (declared["layers"].min_value, declared["layers"].max_value) == (1, 3)
    assert declared["units"].step == 16
    assert isinstance(declared["dropout"], kt.engine.hyperparameters.Float)
    assert declared["learning_rate"].sampling == "log"
    assert isinstance(declared["activation"], kt.engine.hyperparameters.Choice)
    assert declared["activation"].values == ["relu", "tanh"]
    assert isinstance(declared["standardize_inputs"], kt.engine.hyperparameters.Boolean)
    # A fresh HyperParameters returns each default.
    assert values["layers"] == 2
    assert values["dropout"] == pytest.approx(0.2)
    assert values["activation"] == "tanh"
    assert values["standardize_inputs"] is True
    # Hyperparameters the space leaves out get the family's defaults.
    assert values["batch_norm"] == mlp.HYPERPARAMETERS["batch_norm"].default


def test_a_fixed_value_is_not_searched():
    space = parse_space({**SPACE, "units": 48, "activation": "relu"}, mlp.HYPERPARAMETERS)
    hp = kt.HyperParameters()
    values = space.sample(hp)
    declared = {p.name: p for p in hp.space}

    assert isinstance(declared["units"], kt.engine.hyperparameters.Fixed)
    assert isinstance(declared["activation"], kt.engine.hyperparameters.Fixed)
    assert values["units"] == 48 and values["activation"] == "relu"
    assert "units" not in space.searched and "layers" in space.searched


def test_values_chosen_by_a_tuner_reach_the_builder():
    space = parse_space(SPACE, mlp.HYPERPARAMETERS)
    hp = kt.HyperParameters()
    space.sample(hp)
    hp.values.update({"layers": 3, "activation": "relu", "standardize_inputs": False})
    values = space.sample(hp)
    assert (values["layers"], values["activation"], values["standardize_inputs"]) == (3, "relu", False)


def test_defaults_outside_a_search():
    values = parse_space({**SPACE, "units": 32}, mlp.HYPERPARAMETERS).defaults()
    assert values["units"] == 32  # fixed
    assert values["layers"] == 2  # declared default
    assert values["learning_rate"] == pytest.approx(1e-4)  # no default: the minimum


@pytest.mark.parametrize(
    "entry, key, fragment",
    [
        ({"layers": {"type": "int", "min": 3, "max": 1}}, "model.space.layers.min", "<= max"),
        ({"layers": {"type": "integer", "min": 1, "max": 2}}, "model.space.layers.type", "'int'"),
        ({"layers": {"type": "int", "min": 1}}, "model.space.layers.max", "required"),
        ({"layers": {"type": "int", "min": 1.5, "max": 3}}, "model.space.layers.min", "an integer"),
        ({"activation": {"type": "choice", "values": ["relu", "relux"]}}, "model.space.activation", "one of"),
        ({"initializer": "glorot_unifrom"}, "model.space.initializer", "he_normal"),
        ({"units": {"type": "int", "min": 0, "max": 8}}, "model.space.units", ">= 1"),
        ({"dropout": {"type": "float", "min": 0.0, "max": 1.0}}, "model.space.dropout", "< 1.0"),
        (
            {"learning_rate": {"type": "float", "min": 0.0, "max": 1.0, "sampling": "log"}},
            "model.space.learning_rate",
            "> 0",
        ),
        ({"layers": {"type": "int", "min": 1, "max": 2, "stepp": 1}}, "model.space.layers.stepp", "one of the keys"),
        ({"unitz": {"type": "int", "min": 1, "max": 2}}, "model.space.unitz", "'units'"),
        (
            {"activation": {"type": "choice", "values": ["relu"], "default": "tanh"}},
            "model.space.activation.default",
            "relu",
        ),
    ],
)
def test_bad_space_entries_name_the_key_and_what_is_allowed(entry, key, fragment):
    with pytest.raises(ConfigError) as info:
        parse_space(entry, mlp.HYPERPARAMETERS)
    assert info.value.key.startswith(key)
    assert fragment in str(info.value)


def test_grid_search_needs_a_step_for_every_float():
    space = parse_space({"dropout": {"type": "float", "min": 0.0, "max": 0.5}}, mlp.HYPERPARAMETERS)
    with pytest.raises(ConfigError, match="model.space.dropout.step"):
        space.require_grid_compatible("model.space")
    parse_space(
        {"dropout": {"type": "float", "min": 0.0, "max": 0.5, "step": 0.1}}, mlp.HYPERPARAMETERS
    ).require_grid_compatible("model.space")
