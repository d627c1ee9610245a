"""sweeplab: experiment-tracked hyperparameter sweeps for Keras."""

__version__ = "0.1.0"
