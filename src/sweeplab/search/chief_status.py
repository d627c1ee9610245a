"""The one status line of a chief serving its oracle (`chief.py`): agents connected, trials running,
finished and failed. On a terminal it is redrawn in place; otherwise (a log, CI, a multirun's job)
it is a plain line each time it changes, at most every few seconds, and the last one at the end."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass

PLAIN_EVERY_S = 5.0  # the most often a plain status line is printed


@dataclass(frozen=True)
class Counts:
    connected: int
    running: int
    finished: int
    failed: int
    total: int | None  # tuner.max_trials, or None (Hyperband chooses)


def counts(oracle, access, lease_s: float) -> Counts:
    """What the oracle and its gate know now. Connected: tuners heard from within two heartbeats
    (one every lease_s / 6), so that one that stopped drops off before its lease runs out."""
    now = time.monotonic()
    connected = sum(now - seen <= lease_s / 3 for seen in tuple(access.last_seen.values()))
    statuses = [trial.status for trial in tuple(oracle.trials.values())]
    return Counts(
        connected=connected,
        running=len(oracle.ongoing_trials),
        finished=statuses.count("COMPLETED"),
        failed=statuses.count("FAILED") + statuses.count("INVALID"),
        total=oracle.max_trials or None,
    )


def describe(now: Counts, workers: int) -> str:
    who = "agents" if workers == 0 else "workers and agents"
    line = (
        f"[sweeplab] {who} connected: {now.connected}; trials: {now.running} running, "
        f"{now.finished} finished, {now.failed} failed"
    )
    if now.total:
        line += f" (of {now.total})"
    if workers == 0 and not now.connected and not now.running:
        line += "; waiting for agents (the command above)"
    return line


class StatusLine:
    """Shows the latest status: in place when `in_place` (a terminal), else as plain lines."""

    def __init__(self, stream=None, in_place: bool | None = None, every_s: float = PLAIN_EVERY_S, clock=time.monotonic):
        self.stream = stream or sys.stdout
        self.in_place = self.stream.isatty() if in_place is None else in_place
        self.every_s, self.clock = every_s, clock
        self.shown: str | None = None  # the last line written
        self.pending: str | None = None  # a newer one, held back until every_s has passed
        self._shown_at = float("-inf")

    def show(self, text: str) -> None:
        if self.in_place:
            if text != self.shown:
                width = shutil.get_terminal_size().columns - 1
                self._write(f"\r{text[:width]}\x1b[K", text)
            return
        self.pending = text if text != self.shown else None
        if self.pending and self.clock() - self._shown_at >= self.every_s:
            self._write(f"{self.pending}\n", self.pending)

    def close(self) -> None:
        """Ends the line on a terminal; prints the last status if it was held back."""
        if self.in_place and self.shown is not None:
            self.stream.write("\n")
        elif self.pending:
            self._write(f"{self.pending}\n", self.pending)
        self.stream.flush()

    def _write(self, output: str, text: str) -> None:
        self.stream.write(output)
        self.stream.flush()
        self.shown, self.pending, self._shown_at = text, None, self.clock()
