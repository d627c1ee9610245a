"""The classic lab variants of an MLP, `model.variant=N` for N = 1..20.

The variant fixes depth, activation, initializer and batch-norm placement
(see `variant_spec`); the base network around it is fixed too: inputs
standardized inside the model, Dense hidden layers of 25 units, sigmoid
outputs, SGD at learning rate 0.01 and MSE loss. MSE compares the sigmoid
outputs with one-hot targets: the app one-hot encodes a classification target
whenever its loss is not sparse cross-entropy (see `Head.one_hot`), so the
saved model uses only built-in Keras losses and loads anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeplab.models.shared import LEARNING_RATE
from sweeplab.space.rules import Number
from sweeplab.space.vocabulary import LOSSES, OPTIMIZERS, OUTPUT_ACTIVATIONS

VARIANTS = range(1, 21)


@dataclass(frozen=True)
class VariantSpec:
    variant: int
    hidden_layers: int
    activation: str
    initializer: str
    batch_norm: str  # "before" or "after" the activation


def variant_spec(n: int) -> VariantSpec:
    """Depth 1..4 by blocks of five variants; odd N tanh/Glorot/BN before, even N sigmoid/He/BN after."""
    from sweeplab.errors import ConfigError

    if isinstance(n, bool) or not isinstance(n, int) or n not in VARIANTS:
        raise ConfigError("model.variant", n, "an integer from 1 to 20")
    if n % 2:
        return VariantSpec(n, (n - 1) // 5 + 1, "tanh", "glorot_uniform", "before")
    return VariantSpec(n, (n - 1) // 5 + 1, "sigmoid", "he_normal", "after")


@dataclass
class Config:
    family: str = "mlp_variant"
    variant: int = 1
    units: int = 25
    output_activation: str = "sigmoid"
    # The base network's training; the trainer's settings apply where these are null.
    optimizer: str | None = "sgd"
    learning_rate: float | None = 0.01
    loss: str | None = "mean_squared_error"
    space: dict[str, Any] = field(default_factory=dict)

    def check(self) -> list[tuple[str, Any, str]]:
        problems = []
        if isinstance(self.variant, bool) or self.variant not in VARIANTS:
            problems.append(("model.variant", self.variant, "an integer from 1 to 20"))
        if self.units < 1:
            problems.append(("model.units", self.units, "an integer >= 1"))
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            problems.append(("model.output_activation", self.output_activation, f"one of {list(OUTPUT_ACTIVATIONS)}"))
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            problems.append(("model.optimizer", self.optimizer, f"null or one of {list(OPTIMIZERS)}"))
        if self.learning_rate is not None and not self.learning_rate > 0:
            problems.append(("model.learning_rate", self.learning_rate, "null or a number > 0"))
        if self.loss is not None and self.loss not in LOSSES:
            problems.append(("model.loss", self.loss, f"null or one of {list(LOSSES)}"))
        return problems


# `variant` is a hyperparameter too, so one grid search can run all twenty
# (sweeps/lab7_variants.yaml); conf/model/mlp_variant.yaml fixes it to model.variant.
HYPERPARAMETERS = {
    "variant": Number(int, low=1, high=20, default=None),
    "learning_rate": LEARNING_RATE,
}


def build(values: dict, dataset, cfg: Config):
    import keras

    from sweeplab.data.heads import resolve_heads
    from sweeplab.models.blocks import as_model_inputs, dense_block, flat_features, model_inputs, output_heads

    spec = variant_spec(values["variant"] if values.get("variant") is not None else cfg.variant)
    inputs, tensors = model_inputs(dataset)
    # Standardization is part of every variant, adapted on the train split.
    x = flat_features(tensors, dataset)
    for i in range(spec.hidden_layers):
        x = dense_block(
            x,
            units=cfg.units,
            activation=spec.activation,
            initializer=spec.initializer,
            batch_norm=spec.batch_norm,
            dropout=0.0,
            name=f"hidden{i + 1}",
        )
    outputs = output_heads(x, resolve_heads(dataset, cfg))
    return keras.Model(as_model_inputs(inputs), outputs, name=f"mlp_variant_{spec.variant}")
