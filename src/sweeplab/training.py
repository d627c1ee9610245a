"""How a built model is compiled and fitted: optimizer, loss, callbacks."""

from __future__ import annotations


def default_loss(dataset) -> str:
    return "sparse_categorical_crossentropy" if dataset.task == "classification" else "mean_squared_error"


def compile_model(model, values: dict, dataset, trainer, model_cfg=None) -> None:
    """Compile with per-head losses, loss weights and metrics.

    Optimizer: a searched learning_rate wins, then the family's own optimizer
    settings (e.g. mlp_variant's SGD at 0.01), then the trainer's.
    """
    import keras

    from sweeplab.heads import resolve_heads

    heads = resolve_heads(dataset, model_cfg, trainer)
    name = getattr(model_cfg, "optimizer", None) or trainer.optimizer
    learning_rate = values.get("learning_rate") or getattr(model_cfg, "learning_rate", None) or trainer.learning_rate
    optimizer = keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})
    if len(heads) == 1:
        model.compile(optimizer=optimizer, loss=heads[0].loss, metrics=list(heads[0].metrics))
        return
    model.compile(
        optimizer=optimizer,
        loss={h.name: h.loss for h in heads},
        loss_weights={h.name: h.loss_weight for h in heads},
        metrics={h.name: list(h.metrics) for h in heads},
    )


def callbacks(trainer) -> list:
    """Callbacks every fit gets (Keras Tuner copies them for each trial)."""
    import keras

    result = []
    stopping = trainer.early_stopping
    if stopping.enabled:
        result.append(
            keras.callbacks.EarlyStopping(
                monitor=stopping.monitor,
                patience=stopping.patience,
                min_delta=stopping.min_delta,
            )
        )
    # A diverged trial (NaN loss) stops at once instead of wasting its epochs.
    result.append(keras.callbacks.TerminateOnNaN())
    return result
