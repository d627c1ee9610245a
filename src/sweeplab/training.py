"""How a built model is compiled and fitted: optimizer, loss, callbacks."""

from __future__ import annotations


def default_loss(dataset) -> str:
    return "sparse_categorical_crossentropy" if dataset.task == "classification" else "mean_squared_error"


def compile_model(model, values: dict, dataset, trainer) -> None:
    """Compile with the trainer's optimizer; a searched learning_rate wins."""
    import keras

    learning_rate = values.get("learning_rate") or trainer.learning_rate
    optimizer = keras.optimizers.get({"class_name": trainer.optimizer, "config": {"learning_rate": learning_rate}})
    model.compile(
        optimizer=optimizer,
        loss=trainer.loss or default_loss(dataset),
        metrics=list(dataset.metrics),
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
