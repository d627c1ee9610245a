"""Inception modules (functional API) on image inputs.

Each module runs four branches in parallel and concatenates them on the
channel axis: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3 (a 5x5 field, cheaper);
pooling -> 1x1. Global average pooling then feeds the output heads.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweeplab.models.shared import DROPOUT, LEARNING_RATE, SingleHeadConfig
from sweeplab.space.rules import Flag, Number, OneOf
from sweeplab.space.vocabulary import ACTIVATIONS


@dataclass
class Config(SingleHeadConfig):
    family: str = "inception"


HYPERPARAMETERS = {
    "modules": Number(int, low=1, high=8, default=2),
    # Filters of each branch's last convolution (and of its 1x1 reductions).
    "filters": Number(int, low=1, default=16),
    "batch_norm": Flag(default=True),
    "pooling": OneOf(("max", "average"), default="max"),
    "activation": OneOf(ACTIVATIONS, default="relu"),
    "dropout": DROPOUT,
    "learning_rate": LEARNING_RATE,
}


def accepts(dataset) -> str | None:
    """None when the family can take `dataset`, else why not."""
    from sweeplab.models.blocks import image_requirement

    ok = len(dataset.inputs) == 1 and dataset.inputs[0].is_image
    return None if ok else image_requirement(dataset, "inception")


def build(values: dict, dataset, cfg: Config):
    import keras
    from keras import layers

    from sweeplab.data.heads import resolve_heads
    from sweeplab.models.blocks import as_model_inputs, model_inputs, output_heads, single_image

    inputs, tensors = model_inputs(dataset)
    x = single_image(tensors, dataset, "inception")
    for m in range(values["modules"]):
        x = inception_module(
            x, values["filters"], values["batch_norm"], values["pooling"], values["activation"], f"inception{m + 1}"
        )
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    if values["dropout"] > 0:
        x = layers.Dropout(values["dropout"], name="dropout")(x)
    outputs = output_heads(x, resolve_heads(dataset, cfg))
    return keras.Model(as_model_inputs(inputs), outputs, name="inception")


def inception_module(x, filters: int, batch_norm: bool, pooling: str, activation: str, name: str):
    from keras import layers

    def conv(t, size, suffix):
        # Batch norm right after a convolution makes its bias redundant.
        t = layers.Conv2D(filters, size, padding="same", use_bias=not batch_norm, name=f"{name}_{suffix}")(t)
        if batch_norm:
            t = layers.BatchNormalization(name=f"{name}_{suffix}_bn")(t)
        return layers.Activation(activation, name=f"{name}_{suffix}_{activation}")(t)

    branch1 = conv(x, 1, "b1_1x1")
    branch3 = conv(conv(x, 1, "b3_1x1"), 3, "b3_3x3")
    branch5 = conv(conv(conv(x, 1, "b5_1x1"), 3, "b5_3x3a"), 3, "b5_3x3b")
    pool = layers.MaxPooling2D if pooling == "max" else layers.AveragePooling2D
    branch_pool = conv(pool(3, strides=1, padding="same", name=f"{name}_pool")(x), 1, "bp_1x1")
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([branch1, branch3, branch5, branch_pool])
