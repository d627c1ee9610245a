"""sweeplab: experiment-tracked hyperparameter sweeps for Keras."""

import os

# gRPC's C core logs at info level (a peer going away when a search ends): not for users.
# Set before anything imports grpc (MLflow, Keras Tuner's distributed mode).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

__version__ = "0.1.0"
