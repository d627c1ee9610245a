"""Errors with meaning: what the user must fix, found before any training; and any error told
in one line that is safe to print or store (passwords masked); and the one boundary every command
reports them through (`command_boundary`)."""

import functools
import re
import sys

EXIT_USAGE = 2  # a problem the user can fix (and argparse's own usage errors)
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it


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


class WorkerFailedError(RuntimeError):
    """A local worker process of a search exited with an error (the search reports it as stopped)."""


def command_boundary(interrupted: str = "interrupted", exits: bool = False):
    """The one error boundary of every command: a SweeplabError is one line on stderr,
    `sweeplab: <why>`, and exit status 2, without a traceback; Ctrl-C is one line (`interrupted`)
    and status 130. The decorated function returns that status, or with `exits` ends the process
    with it (a Hydra task or callback, whose return value is not a status). Passwords in the message
    are masked; any other exception is a bug and keeps its traceback."""

    def decorate(command):
        @functools.wraps(command)
        def guarded(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except SweeplabError as err:
                status, message = EXIT_USAGE, redact(str(err))
            except KeyboardInterrupt:
                status, message = EXIT_INTERRUPTED, interrupted
            print(f"sweeplab: {message}", file=sys.stderr, flush=True)
            if exits:
                sys.exit(status)
            return status

        return guarded

    return decorate


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
