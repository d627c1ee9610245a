"""Keras' session between trials, while finished trials' models are read on the writer thread.

`keras.backend.clear_session()` replaces Keras' global state for every thread at once
(name scopes, the layer call context), so a model being saved or called on the writer
thread at that moment would fail. Clearing the session and reading a model take turns.
"""

from __future__ import annotations

import threading

import keras

turn = threading.Lock()  # held while a session is cleared, or a finished model is read


def clear() -> None:
    with turn:
        keras.backend.clear_session()
