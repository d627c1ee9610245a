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


def model_inputs(dataset) -> tuple[dict, dict]:
    """(one named keras.Input per input the data set declares, the tensors a family builds on).

    Inputs arrive as the data file holds them; when the data set carries train
    statistics, each is standardized by the model's own first layer, so a logged
    model needs no preprocessing outside it.
    """
    import keras
    import numpy as np
    from keras import layers

    inputs = {i.name: keras.Input(shape=i.shape, name=i.name) for i in dataset.inputs}
    tensors = dict(inputs)
    for name, (mean, std) in dataset.standardization.items():
        every_feature = tuple(range(1, len(inputs[name].shape)))
        scale = layers.Normalization(axis=every_feature, mean=mean, variance=np.square(std), name=f"{name}_scaling")
        tensors[name] = scale(inputs[name])
    return inputs, tensors


def flat_features(tensors: dict, dataset=None):
    """Every input tensor flattened, several merged with `concatenate` (dense families).

    dataset: when given, a Normalization layer adapted on its train split (as the
    layer sees it) standardizes each input again, as a searched choice of a family.
    """
    from keras import layers

    seen = dataset.standardized(dataset.train) if dataset is not None else None
    parts = []
    for name, tensor in tensors.items():
        x = layers.Flatten(name=f"{name}_flatten")(tensor) if len(tensor.shape) > 2 else tensor
        if seen is not None:
            norm = layers.Normalization(name=f"{name}_standardize")
            train = seen.inputs[name]
            norm.adapt(train.reshape(len(train), -1))
            x = norm(x)
        parts.append(x)
    return parts[0] if len(parts) == 1 else layers.Concatenate(name="merge_inputs")(parts)


def single_image(inputs: dict, dataset, family: str):
    """The one image input a conv family needs."""
    from sweeplab.errors import DataError

    images = [i for i in dataset.inputs if i.is_image]
    if len(dataset.inputs) != 1 or not images:
        raise DataError(image_requirement(dataset, family))
    return inputs[images[0].name]


def image_requirement(dataset, family: str) -> str:
    shapes = {i.name: i.shape for i in dataset.inputs}
    return (
        f"model={family} needs one image input (height, width, channels); data={dataset.name} has inputs {shapes}. "
        "Use a dense family (mlp, mlp_variant, residual, multi_output) on tabular data."
    )


def output_heads(x, heads):
    """One Dense output per head, named after its target: a tensor for one head, a dict for several."""
    from keras import layers

    outputs = {h.name: layers.Dense(h.units, activation=h.activation, name=h.name)(x) for h in heads}
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


def as_model_inputs(inputs: dict):
    """What keras.Model takes: the tensor for one input (so fit takes a plain array), the dict for several."""
    return next(iter(inputs.values())) if len(inputs) == 1 else inputs
