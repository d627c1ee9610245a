"""Residual networks: blocks whose output is added to their input.

On images a block is conv -> batch norm -> activation -> conv -> batch norm,
added to the block input (through a 1x1 projection when the channel counts
differ), then the activation; convolutions may be depthwise-separable. On
vector data the same block uses Dense layers (a Dense projection when widths
differ).
"""

from __future__ import annotations

from dataclasses import dataclass

from sweeplab.models.shared import DROPOUT, LEARNING_RATE, SingleHeadConfig
from sweeplab.space.rules import Flag, Number, OneOf
from sweeplab.space.vocabulary import ACTIVATIONS


@dataclass
class Config(SingleHeadConfig):
    family: str = "residual"


HYPERPARAMETERS = {
    "blocks": Number(int, low=1, high=16, default=2),
    # Channels of each conv block, or units of each dense block on vector data.
    "filters": Number(int, low=1, default=16),
    "kernel_size": OneOf((1, 3, 5, 7), default=3),
    # Depthwise-separable convolutions (images only).
    "separable": Flag(default=False),
    "activation": OneOf(ACTIVATIONS, default="relu"),
    "dropout": DROPOUT,
    "learning_rate": LEARNING_RATE,
}


def build(values: dict, dataset, cfg: Config):
    import keras
    from keras import layers

    from sweeplab.data.heads import resolve_heads
    from sweeplab.models.blocks import as_model_inputs, flat_features, model_inputs, output_heads

    inputs, tensors = model_inputs(dataset)
    on_images = len(dataset.inputs) == 1 and dataset.inputs[0].is_image
    x = next(iter(tensors.values())) if on_images else flat_features(tensors)
    for b in range(values["blocks"]):
        name = f"block{b + 1}"
        if on_images:
            x = conv_block(x, values["filters"], values["kernel_size"], values["separable"], values["activation"], name)
        else:
            x = dense_block(x, values["filters"], values["activation"], name)
    if on_images:
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    if values["dropout"] > 0:
        x = layers.Dropout(values["dropout"], name="dropout")(x)
    outputs = output_heads(x, resolve_heads(dataset, cfg))
    return keras.Model(as_model_inputs(inputs), outputs, name="residual")


def conv_block(x, filters: int, kernel_size: int, separable: bool, activation: str, name: str):
    from keras import layers

    conv = layers.SeparableConv2D if separable else layers.Conv2D
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_projection")(x)
    # Batch norm follows each convolution, so the convolutions need no bias.
    y = conv(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation(activation, name=f"{name}_{activation}1")(y)
    y = conv(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation(activation, name=f"{name}_{activation}2")(y)


def dense_block(x, units: int, activation: str, name: str):
    from keras import layers

    shortcut = x
    if x.shape[-1] != units:
        shortcut = layers.Dense(units, use_bias=False, name=f"{name}_projection")(x)
    y = layers.Dense(units, use_bias=False, name=f"{name}_dense1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation(activation, name=f"{name}_{activation}1")(y)
    y = layers.Dense(units, use_bias=False, name=f"{name}_dense2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation(activation, name=f"{name}_{activation}2")(y)
