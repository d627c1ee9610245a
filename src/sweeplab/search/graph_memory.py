"""Memory across trials: what TensorFlow keeps of finished trials, and what
Keras Tuner's garbage collection between trials costs.

Keras' TensorFlow optimizer sums gradients through `ReplicaContext.all_reduce`,
which wraps them in `tf.custom_gradient`. In graph mode every trace registers
a "CustomGradient-<n>" function in TensorFlow's global gradient registry, and
that function holds the whole traced training graph. Nothing removes it, so
each trial's graphs stayed in memory (about 7 MiB per trial on digits).

The registry is only read while a function is being traced, so between
trials, when no trace is under way, those entries can go.

Keras Tuner runs a full `gc.collect()` before every trial, and Keras'
`clear_session()` another: with TensorFlow, Keras and MLflow loaded each one
scans about half a million objects (0.3 s). Objects that are alive when the
search starts (modules, the data) stay alive, so they are moved out of the
collector's reach for the search, and those collections only scan what trials create.
"""

from __future__ import annotations

import gc

_PREFIX = "CustomGradient-"


def _registry() -> dict:
    from tensorflow.python.framework import ops

    # Private to TensorFlow; if it ever moves, nothing is freed and nothing breaks.
    return getattr(getattr(ops, "_gradient_registry", None), "_registry", {})


def release_traced_graphs() -> None:
    """Call only between trials: drops the custom gradients of graphs traced so far."""
    registry = _registry()
    for name in [name for name in registry if name.startswith(_PREFIX)]:
        del registry[name]


def spare_long_lived_objects() -> None:
    """Call once, right before the trials: what is alive now is not scanned again
    until `release_long_lived_objects`."""
    gc.collect()
    gc.freeze()


def release_long_lived_objects() -> None:
    """Call when the search ends: in a process that runs several searches (a multirun,
    a notebook), what the last one froze and no longer uses can be collected."""
    gc.unfreeze()
