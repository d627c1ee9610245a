"""Errors with meaning: what the user must fix, found before any training."""

import re


class SweeplabError(Exception):
    """Base class: a problem the user can fix; printed without a traceback."""


class ConfigError(SweeplabError):
    """A config key has a value that is not allowed."""

    def __init__(self, key: str, value, expected: str):
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"config error at '{key}': got {value!r}; expected {expected}")


class DataError(SweeplabError):
    """A data set cannot be loaded or split as configured."""


class TrackingError(SweeplabError):
    """The MLflow store cannot be used."""


class AllTrialsFailedError(SweeplabError):
    """Every trial of a search failed."""


class EnsembleError(SweeplabError):
    """An ensemble cannot be built from the chosen trials."""


class SearchStoppedError(SweeplabError):
    """Keras Tuner stopped a search after too many consecutive failed trials."""


def short_reason(message: str) -> str:
    """The last meaningful line of a traceback: why a trial or a write failed, in one line."""
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    return re.sub(r"\s+", " ", lines[-1]) if lines else "unknown error"
