"""This process's one background thread for MLflow writes: epoch metrics while a
trial trains, and a finished trial's record (its model files, figures, results)
while the next one trains. Writes keep the order they were submitted in; a write
that fails says so in the output, and its Future holds the error.

Not MLflow's own async logging: ending a run waits up to a second for its queue
to notice, and its failed writes are not retried.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as WaitTimeout

from sweeplab.errors import describe

_writer: ThreadPoolExecutor | None = None


def submit(fn, *args, **kwargs) -> Future:
    global _writer
    if _writer is None:
        _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeplab-writer")
    return _writer.submit(_said_if_failed, fn, *args, **kwargs)


def _said_if_failed(fn, *args, **kwargs):
    # Whoever holds the Future may never read it: the failure is in the output either way.
    try:
        return fn(*args, **kwargs)
    except Exception as err:
        print(f"[sweeplab] background MLflow write {getattr(fn, '__name__', '')} failed: {describe(err)}", flush=True)
        raise


def wait_for_writes(timeout_s: float | None = None) -> None:
    """Return once everything submitted so far has been written (or has failed), or after `timeout_s`."""
    if _writer is not None:
        try:
            submit(lambda: None).result(timeout=timeout_s)
        except WaitTimeout:
            print(
                f"[sweeplab] stopped waiting for MLflow writes after {timeout_s:g} s: some may not have landed",
                flush=True,
            )
