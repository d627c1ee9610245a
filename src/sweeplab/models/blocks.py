"""Building blocks shared by the model families."""

from __future__ import annotations


def dense_block(x, units: int, activation: str, initializer: str, batch_norm: str, dropout: float, name: str):
    """Dense -> activation, with batch normalization before or after the activation."""
    import keras
    from keras import layers

    x = layers.Dense(
        units,
        kernel_initializer=keras.initializers.get(initializer),
        # Batch norm right after Dense makes its bias redundant.
        use_bias=batch_norm != "before",
        name=f"{name}_dense",
    )(x)
    if batch_norm == "before":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    if batch_norm == "after":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def classification_head(x, num_classes: int, activation: str, name: str = "output"):
    from keras import layers

    return layers.Dense(num_classes, activation=activation, name=name)(x)
