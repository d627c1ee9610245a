"""Errors with meaning: what the user must fix, found before any training; and any error told
in one line that is safe to print or store (passwords masked)."""

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


# scheme://user:PASSWORD@ anywhere in a text (a URI alone, an override, an error message).
_PASSWORD = re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")


def redact(text: str) -> str:
    """The text (a URI, or anything holding URIs) with every password replaced, safe to print or log."""
    return _PASSWORD.sub(r"\g<keep>***@", text)


def describe(err: BaseException) -> str:
    """Why `err` happened, in one line safe to print, tag or log (see `one_line`)."""
    return one_line(f"{type(err).__name__}: {err}")


def one_line(message: str) -> str:
    """An error's text or a traceback as one line safe to print, tag or log: its last meaningful
    line, passwords masked (a store's error names its URI), without the bold and the call
    arguments Keras adds to an error raised in a layer."""
    message = re.sub(r"\x1b\[[0-9;]*m", "", message.split("Arguments received by")[0])
    return short_reason(redact(message))


def short_reason(message: str) -> str:
    """The last meaningful line of a traceback: why a trial or a write failed, in one line."""
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    return re.sub(r"\s+", " ", lines[-1]) if lines else "unknown error"
