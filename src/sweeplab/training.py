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
