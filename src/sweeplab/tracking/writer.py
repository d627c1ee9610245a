"""This process's one background thread for MLflow writes: epoch metrics while a
trial trains, and a finished trial's record (its model files, figures, results)
while the next one trains. Writes keep the order they were submitted in.

Not MLflow's own async logging: ending a run waits up to a second for its queue
to notice, and its failed writes are not retried.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

_writer: ThreadPoolExecutor | None = None


def submit(fn, *args, **kwargs) -> Future:
    global _writer
    if _writer is None:
        _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeplab-writer")
    return _writer.submit(fn, *args, **kwargs)


def wait_for_writes(timeout_s: float | None = None) -> None:
    """Return once everything submitted so far has been written (or has failed), or after `timeout_s`."""
    if _writer is not None:
        try:
            submit(lambda: None).result(timeout=timeout_s)
        except TimeoutError:
            pass
