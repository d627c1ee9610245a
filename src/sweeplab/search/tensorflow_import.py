"""Importing TensorFlow without its start-up lines.

TensorFlow 2.21 prints absl's "All log messages before absl::InitializeLog()"
and oneDNN's notice from C++ while it loads, whatever TF_CPP_MIN_LOG_LEVEL
says; a user of a sweep needs neither. Errors still surface: a failed import
raises after the output is restored.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's later C++ info and warning lines
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
