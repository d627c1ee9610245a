"""Names Keras understands, listed here so validation never imports Keras."""

ACTIVATIONS = (
    "relu",
    "tanh",
    "sigmoid",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "softplus",
    "softsign",
    "leaky_relu",
    "relu6",
    "mish",
    "hard_sigmoid",
    "linear",
)
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")
INITIALIZERS = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "random_normal",
    "random_uniform",
    "truncated_normal",
)
BATCH_NORM = ("none", "before", "after")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adamax", "nadam")
LOSSES = (
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
    "mean_squared_error",
    "mean_absolute_error",
    "huber",
)
# Metric names Keras accepts as strings (classification, then regression).
METRICS = (
    "accuracy",
    "mae",
    "mse",
    "mape",
    "mean_absolute_error",
    "mean_squared_error",
)
