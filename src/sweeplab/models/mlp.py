"""Multi-layer perceptron on flattened inputs."""

from __future__ import annotations

from dataclasses import dataclass

from sweeplab.models.shared import DROPOUT, LEARNING_RATE, SingleHeadConfig
from sweeplab.space.rules import Flag, Number, OneOf
from sweeplab.space.vocabulary import ACTIVATIONS, BATCH_NORM, INITIALIZERS


@dataclass
class Config(SingleHeadConfig):
    family: str = "mlp"


# The hyperparameters build() reads; a space may search or fix any of them.
HYPERPARAMETERS = {
    "layers": Number(int, low=1, high=64, default=2),
    "units": Number(int, low=1, default=64),
    "activation": OneOf(ACTIVATIONS, default="relu"),
    "initializer": OneOf(INITIALIZERS, default="glorot_uniform"),
    "batch_norm": OneOf(BATCH_NORM, default="none"),
    "dropout": DROPOUT,
    "learning_rate": LEARNING_RATE,
    "standardize_inputs": Flag(default=False),
}


def build(values: dict, dataset, cfg: Config):
    import keras

    from sweeplab.data.heads import resolve_heads
    from sweeplab.models.blocks import as_model_inputs, dense_block, flat_features, model_inputs, output_heads

    inputs, tensors = model_inputs(dataset)
    x = flat_features(tensors, dataset if values["standardize_inputs"] else None)
    for i in range(values["layers"]):
        x = dense_block(
            x,
            units=values["units"],
            activation=values["activation"],
            initializer=values["initializer"],
            batch_norm=values["batch_norm"],
            dropout=values["dropout"],
            name=f"hidden{i + 1}",
        )
    outputs = output_heads(x, resolve_heads(dataset, cfg))
    return keras.Model(as_model_inputs(inputs), outputs, name="mlp")
