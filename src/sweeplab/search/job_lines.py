"""Output lines of one job among several (a Hydra multirun's searches), each started with the job's
name, e.g. `[mlp/random] `: what the job prints, Keras' and logging's lines included, and its local
workers' (they read the name from the environment)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading

# The job's name for the worker processes its search starts (tuner.workers > 1).
ENV_PREFIX = "SWEEPLAB_JOB_PREFIX"
_LINE_ENDS = re.compile(r"(\r\n|\n|\r)")


class PrefixedLines:
    """A text stream that starts each line written to `stream` with `prefix`. A carriage return
    (Keras' progress bar redraws its line with one) starts the line again, prefix included."""

    def __init__(self, stream, prefix: str):
        self.stream, self.prefix = stream, prefix
        self._at_line_start = True
        self._lock = threading.RLock()  # the writer thread and gRPC threads print too; a signal handler may

    def write(self, text: str) -> int:
        with self._lock:
            pieces = []
            for piece in _LINE_ENDS.split(text):
                if not piece:
                    continue
                if _LINE_ENDS.fullmatch(piece):
                    if self._at_line_start and piece != "\r":  # an empty line is the job's too
                        pieces.append(self.prefix.rstrip())
                    self._at_line_start = True
                elif self._at_line_start:
                    pieces.append(self.prefix)
                    self._at_line_start = False
                pieces.append(piece)
            self.stream.write("".join(pieces))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        # Not ours to close: a handler that closes what it writes to (absl's) must leave stdout open.
        self.stream.flush()

    def isatty(self) -> bool:
        # Other jobs' lines share the terminal: nothing is redrawn in place (rich, tqdm and the chief
        # print plain lines instead of live bars).
        return False

    def __getattr__(self, name: str):  # encoding, fileno, buffer...: the stream's own
        return getattr(self.stream, name)


@contextlib.contextmanager
def prefixed(prefix: str | None):
    """While the block runs, every line this process prints (and its local workers') starts with
    `prefix`; nothing changes when it is empty or None."""
    if not prefix or isinstance(sys.stdout, PrefixedLines) or threading.current_thread() is not threading.main_thread():
        yield  # already a job's (or a job run as a thread, whose streams are the process's)
        return
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PrefixedLines(out, prefix), PrefixedLines(err, prefix)
    wrapped = {out: sys.stdout, err: sys.stderr}
    _point_handlers(wrapped)
    before = os.environ.get(ENV_PREFIX)
    os.environ[ENV_PREFIX] = prefix
    try:
        yield
    finally:  # the wrappers hold nothing back: there is nothing to flush first
        sys.stdout, sys.stderr = out, err
        # Handlers made during the job (MLflow's, absl's) hold its streams too: none keeps its name.
        _point_handlers({wrapper: stream for stream, wrapper in wrapped.items()})
        if before is None:
            os.environ.pop(ENV_PREFIX, None)
        else:
            os.environ[ENV_PREFIX] = before


def from_environment():
    """`prefixed` with the name the job that started this process gave it (none outside a multirun)."""
    return prefixed(os.environ.get(ENV_PREFIX))


def _point_handlers(replacements: dict) -> None:
    """Logging handlers that write to a replaced stream (Hydra's, MLflow's and absl's hold the stream
    they were given) write to its replacement."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", ())):
            # absl's handler writes through the one it holds.
            for writer in (handler, getattr(handler, "python_handler", None)):
                stream = getattr(writer, "stream", None)
                if isinstance(writer, logging.StreamHandler) and any(stream is old for old in replacements):
                    writer.setStream(replacements[stream])
