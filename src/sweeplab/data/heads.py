"""Output heads: one per target of the data set, with the activation, loss,
loss weight and metrics each is compiled with.

Settings come, most specific first, from the model's `heads.<name>` config
(family `multi_output`), then `trainer.loss`, then the family's own defaults
(`output_activation`, `loss`), then the target's task. No Keras here, so the
metric names a model will report are known before any training.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweeplab.errors import ConfigError

TASK_DEFAULTS = {
    "classification": {"activation": "softmax", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
    "regression": {"activation": "linear", "loss": "mean_squared_error", "metrics": ["mae"]},
}


@dataclass(frozen=True)
class Head:
    name: str
    task: str
    units: int
    activation: str
    loss: str
    loss_weight: float
    metrics: tuple

    @property
    def one_hot(self) -> bool:
        """Class indices fit only the sparse loss; any other loss needs one-hot targets."""
        return self.task == "classification" and self.loss != "sparse_categorical_crossentropy"


def resolve_heads(dataset, model_cfg=None, trainer=None) -> list[Head]:
    configured = dict(getattr(model_cfg, "heads", None) or {})
    names = [t.name for t in dataset.targets]
    for name in configured:
        if name not in names:
            raise ConfigError(f"model.heads.{name}", name, f"a target of data set {dataset.name!r}: one of {names}")
    heads = []
    for target in dataset.targets:
        defaults = TASK_DEFAULTS[target.task]
        own = configured.get(target.name)
        activation = getattr(own, "activation", None)
        if activation is None and target.task == "classification":
            activation = getattr(model_cfg, "output_activation", None)
        loss = getattr(own, "loss", None) or getattr(trainer, "loss", None) or getattr(model_cfg, "loss", None)
        heads.append(
            Head(
                name=target.name,
                task=target.task,
                units=target.units,
                activation=activation or defaults["activation"],
                loss=loss or defaults["loss"],
                loss_weight=float(getattr(own, "loss_weight", 1.0)),
                metrics=tuple(getattr(own, "metrics", None) or defaults["metrics"]),
            )
        )
    return heads


def reported_metrics(heads: list[Head]) -> list[str]:
    """What Keras logs besides `loss`: `<metric>` for one head, `<head>_<metric>` and `<head>_loss` for several."""
    if len(heads) == 1:
        return list(heads[0].metrics)
    names = []
    for head in heads:
        names += [f"{head.name}_loss", *(f"{head.name}_{m}" for m in head.metrics)]
    return names
