"""A shared trunk with one named head per target, and several named inputs.

The first input the data set declares is the main one: it enters the trunk.
Any others are auxiliary: merged with `concatenate` after the trunk's first
layer. Each head's activation, loss, loss weight and metrics come from
`model.heads.<target>` (defaults by task), so a tuner objective can name a
head metric such as `val_cultivar_accuracy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeplab.models.shared import DROPOUT, LEARNING_RATE
from sweeplab.space.rules import Number, OneOf
from sweeplab.space.vocabulary import ACTIVATIONS, BATCH_NORM, LOSSES, METRICS, OUTPUT_ACTIVATIONS


@dataclass
class HeadConfig:
    activation: str | None = None
    loss: str | None = None
    loss_weight: float = 1.0
    metrics: list[str] = field(default_factory=list)


@dataclass
class Config:
    family: str = "multi_output"
    # Target name -> its head's settings; a target not listed gets its task's defaults.
    heads: dict[str, HeadConfig] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)

    def check(self) -> list[tuple[str, Any, str]]:
        problems = []
        for name, head in self.heads.items():
            key = f"model.heads.{name}"
            if head.activation is not None and head.activation not in OUTPUT_ACTIVATIONS:
                problems.append((f"{key}.activation", head.activation, f"null or one of {list(OUTPUT_ACTIVATIONS)}"))
            if head.loss is not None and head.loss not in LOSSES:
                problems.append((f"{key}.loss", head.loss, f"null (from the task) or one of {list(LOSSES)}"))
            if not head.loss_weight >= 0:
                problems.append((f"{key}.loss_weight", head.loss_weight, "a number >= 0"))
            for metric in head.metrics:
                if metric not in METRICS:
                    problems.append((f"{key}.metrics", metric, f"metrics from {list(METRICS)}"))
        return problems


HYPERPARAMETERS = {
    "layers": Number(int, low=1, high=16, default=2),
    "units": Number(int, low=1, default=32),
    "activation": OneOf(ACTIVATIONS, default="relu"),
    "batch_norm": OneOf(BATCH_NORM, default="none"),
    "dropout": DROPOUT,
    "learning_rate": LEARNING_RATE,
}


def build(values: dict, dataset, cfg: Config):
    import keras
    from keras import layers

    from sweeplab.data.heads import resolve_heads
    from sweeplab.models.blocks import as_model_inputs, dense_block, flat_features, model_inputs, output_heads

    inputs, tensors = model_inputs(dataset)
    main, *auxiliary = tensors
    x = flat_features({main: tensors[main]})
    for i in range(values["layers"]):
        x = dense_block(
            x,
            units=values["units"],
            activation=values["activation"],
            initializer="glorot_uniform",
            batch_norm=values["batch_norm"],
            dropout=values["dropout"],
            name=f"trunk{i + 1}",
        )
        if i == 0 and auxiliary:
            x = layers.Concatenate(name="merge_auxiliary")([x, flat_features({a: tensors[a] for a in auxiliary})])
    outputs = output_heads(x, resolve_heads(dataset, cfg))
    return keras.Model(as_model_inputs(inputs), outputs, name="multi_output")
