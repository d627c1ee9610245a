"""How a built model is compiled and fitted: optimizer, loss, callbacks."""

from __future__ import annotations


def compile_model(model, values: dict, dataset, trainer, model_cfg=None) -> None:
    """Compile with per-head losses, loss weights and metrics.

    Optimizer: a searched learning_rate wins, then the family's own optimizer
    settings (e.g. mlp_variant's SGD at 0.01), then the trainer's.
    """
    import keras

    from sweeplab.data.heads import resolve_heads

    heads = resolve_heads(dataset, model_cfg, trainer)
    name = getattr(model_cfg, "optimizer", None) or trainer.optimizer
    learning_rate = values.get("learning_rate") or getattr(model_cfg, "learning_rate", None) or trainer.learning_rate
    optimizer = keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})
    if len(heads) == 1:
        model.compile(
            optimizer=optimizer,
            loss=heads[0].loss,
            metrics=list(heads[0].metrics),
            steps_per_execution=trainer.steps_per_execution,
        )
        return
    model.compile(
        optimizer=optimizer,
        loss={h.name: h.loss for h in heads},
        loss_weights={h.name: h.loss_weight for h in heads},
        metrics={h.name: list(h.metrics) for h in heads},
        # Several batches per call into the compiled graph: less Python per step.
        steps_per_execution=trainer.steps_per_execution,
    )


def fit_data(dataset, trainer, seed: int):
    """(train, val) as tf.data pipelines, built once per process and reused by every trial.

    The batch dimension is unknown to the traced graph, so each trial traces its
    train and test functions once, not again for the last, smaller batch.
    Training data is reshuffled every epoch, like `fit(shuffle=True)` on arrays.
    """
    import tensorflow as tf

    train = (
        tf.data.Dataset.from_tensor_slices((dataset.train.x, dataset.train.y))
        .cache()
        .shuffle(len(dataset.train), seed=seed, reshuffle_each_iteration=True)
        .batch(trainer.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    return train, eval_data(dataset.val, trainer)


def eval_data(split, trainer):
    """A split as a batched tf.data pipeline for evaluation: evaluating it reuses
    the traced test function (NumPy arrays cost a new data adapter each time)."""
    import tensorflow as tf

    return (
        tf.data.Dataset.from_tensor_slices((split.x, split.y))
        .batch(trainer.batch_size)
        .cache()
        .prefetch(tf.data.AUTOTUNE)
    )


def callbacks(trainer, tensorboard_dir=None) -> list:
    """Callbacks every fit gets (Keras Tuner copies them for each trial, and gives
    a TensorBoard callback a log directory of each trial's own under `tensorboard_dir`)."""
    import keras

    result = []
    if trainer.tensorboard:
        result.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir)))
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
