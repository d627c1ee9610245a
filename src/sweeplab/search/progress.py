"""What a search shows while it runs: its trials so far, a pack's trials and epochs, each trial's result.

On a terminal the search is a live progress bar (rich); elsewhere (CI, logs, a multirun's
jobs, local workers that share their chief's terminal) plain lines. No line is wider than the
terminal, or than PLAIN_WIDTH characters off a terminal. Keras Tuner's own display is silenced
(`tuning.make_tuner`): trials are named by their Keras Tuner id, as their runs are (`trial-<id>`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import sys
import time

PLAIN_WIDTH = 200
PREFIX = "[sweeplab]"
CELL = 16  # the widest column of a pack's table; longer values are cut
MIN_CELL = 5  # a header is cut no shorter than this to make room
CUT = "~"


def best_effort(show):
    """A display call: a failure to print (a closed pipe, a terminal gone) never fails a trial or a search."""

    @functools.wraps(show)
    def shown(*args, **kwargs):
        try:
            return show(*args, **kwargs)
        except Exception:
            return None

    return shown


def on_terminal() -> bool:
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def width() -> int:
    """The widest line: the terminal's, else PLAIN_WIDTH; less a multirun job's prefix of its lines."""
    from sweeplab.search.job_lines import ENV_PREFIX

    # A multirun job's wrapped stdout says it is no terminal (no live bars), yet its lines land on one.
    real = sys.__stdout__
    on_screen = on_terminal() or bool(real is not None and real.isatty())
    room = shutil.get_terminal_size().columns if on_screen else PLAIN_WIDTH
    return room - len(os.environ.get(ENV_PREFIX, ""))


def fit(text: str) -> str:
    """`text` with each line wider than `width()` broken between words, the rest indented under it;
    a word wider than that (an address) is never broken."""
    import textwrap

    room, lines = width(), []
    for line in text.split("\n"):
        if len(line) <= room:
            lines.append(line)
            continue
        indent = " " * min(len(line) - len(line.lstrip()) + 2, room // 4)
        lines += textwrap.wrap(line, room, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - len(CUT))] + CUT


@best_effort
def say(text: str, prefixed: bool = True) -> None:
    """One line, cut to the width."""
    print(cut(f"{PREFIX} {text}" if prefixed else text, width()), flush=True)


def number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def trial_table(trials: list[tuple[str, dict]], limit: int) -> list[str]:
    """Rows of (trial id, hyperparameter values) as a table no wider than `limit`: columns that
    do not fit are left out (said on a last line); Keras Tuner's own `tuner/...` entries too."""
    names = [n for n in dict.fromkeys(k for _, values in trials for k in values) if not n.startswith("tuner/")]
    columns = [("trial", [trial_id for trial_id, _ in trials])]
    columns += [(name, [number(values.get(name, "")) for _, values in trials]) for name in names]
    sizes = [min(CELL, max(len(header), *map(len, cells))) for header, cells in columns]
    if sum(sizes) + 2 * len(sizes) > limit:  # headers cut to their values' width before columns go
        sizes = [min(size, max(MIN_CELL, *map(len, cells))) for size, (_, cells) in zip(sizes, columns)]
    shown, used = [], 0
    for (header, cells), size in zip(columns, sizes):
        if used + 2 + size > limit:
            break
        shown.append([cut(text, size).ljust(size) for text in [header, *cells]])
        used += 2 + size
    lines = ["  " + "  ".join(column[row] for column in shown).rstrip() for row in range(len(trials) + 1)]
    if len(shown) < len(columns):
        lines.append(cut(f"  (+{len(columns) - len(shown)} more hyperparameters: in each trial's MLflow run)", limit))
    return lines


@best_effort
def show_trials(title: str, trials: list[tuple[str, dict]]) -> None:
    """Before a pack (or an unpacked trial) trains: its trials' hyperparameters."""
    say(title)
    for line in trial_table(trials, width()):
        print(line, flush=True)


@best_effort
def trial_result(
    trial_id: str, objective: str, score: float | None, best_epoch: int | None, trained: int, budget: int, pruned=False
):
    """A trial's result, in one line (`pruned`: the oracle stopped it)."""
    at = f" at epoch {best_epoch}" if best_epoch is not None else ""
    early = ", pruned" if pruned else ", stopped early" if trained < budget else ""
    score_text = number(float(score)) if score is not None else "no score"
    say(f"trial {trial_id}: {objective} {score_text}{at}; {trained}/{budget} epochs trained{early}")


class SearchProgress:
    """Trials finished (of `total`, None when unknown), failed, the best so far, elapsed and time
    left: a live bar on a terminal (`live`), else one plain line as trials end (one per pack)."""

    def __init__(self, label: str, objective: str, maximize: bool, total: int | None, live: bool, ended=0, failed=0):
        self.label, self.objective, self.maximize, self.total, self.live = label, objective, maximize, total, live
        self.ended, self.failed, self.ended_before = ended, failed, ended
        self.best: tuple[float, str] | None = None
        self.started = time.monotonic()
        self._bar = self._task = None
        self._holding = self._unsaid = False

    @best_effort
    def start(self) -> None:
        if not self.live:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Column

        # The status takes what the terminal has left and is cut there; the bar and the clock keep their width.
        self._bar = Progress(
            TextColumn("{task.description}", markup=False, table_column=Column(no_wrap=True)),
            BarColumn(bar_width=None, table_column=Column(width=16)),
            TimeElapsedColumn(table_column=Column(no_wrap=True, width=7)),
            TextColumn(
                "{task.fields[status]}", markup=False, table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)
            ),
            console=Console(),  # this search's stdout and width, not those of whoever used rich before
            refresh_per_second=4,
            expand=True,
        )
        self._task = self._bar.add_task(self.label, total=self.total, completed=self.ended, status=self.status())
        self._bar.start()

    @best_effort
    def finish(self, complete: bool = False) -> None:
        """The display ends; `complete`: the search is done, though it may have had fewer trials than planned."""
        if complete and self.total is not None and self.ended < self.total:
            self.total = self.ended
            self._unsaid = True
        self._update()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._unsaid:
            self._say()

    def consider(self, trial_id: str, score: float | None) -> None:
        """A trial already finished (a resumed search): its score may be the best."""
        if score is None or not math.isfinite(score):
            return
        if self.best is None or (score > self.best[0] if self.maximize else score < self.best[0]):
            self.best = (score, trial_id)

    @best_effort
    def trial_ended(self, trial_id: str, score: float | None) -> None:
        """A trial ended: its score, or None if it failed."""
        self.ended += 1
        if score is None:
            self.failed += 1
        self.consider(trial_id, score)
        self._unsaid = True
        if not self._holding:
            self._update()
            if self._bar is None:
                self._say()

    @contextlib.contextmanager
    def held(self):
        """Trials ending together (a pack): one plain line once they all have."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            self._update()
            if self._bar is None and self._unsaid:
                self._say()

    def status(self, elapsed: bool = False) -> str:
        """Trials finished (of how many), failed, the best so far, [elapsed,] the time left."""
        if self.total is not None:
            text = f"{self.ended}/{self.total} trials finished, {self.failed} failed"
        else:  # a worker's or an agent's own trials
            text = f"{self.ended} trial{'s' if self.ended != 1 else ''} finished here, {self.failed} failed"
        if self.best is not None:
            text += f", best {self.objective} {number(self.best[0])} (trial {self.best[1]})"
        if elapsed:
            text += f", {duration(time.monotonic() - self.started)} elapsed"
        left = self.time_left()
        return text + (f", ~{duration(left)} left" if left is not None else "")

    def time_left(self) -> float | None:
        """From the pace of the trials ended in this process; None when unknown or none is left."""
        ended_here = self.ended - self.ended_before
        if self.total is None or ended_here <= 0 or self.ended >= self.total:
            return None
        return (time.monotonic() - self.started) / ended_here * (self.total - self.ended)

    @best_effort
    def _update(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=self.total, completed=self.ended, status=self.status(), refresh=True)

    def _say(self) -> None:
        self._unsaid = False
        say(f"{self.label}: {self.status(elapsed=True)}")

    # A pack's epochs, on the same live display as the search.
    def add_bar(self, label: str, total: int):
        return self._bar.add_task(label, total=total, status="") if self._bar is not None else None

    def update_bar(self, task, completed: int, status: str) -> None:
        self._bar.update(task, completed=completed, status=status, refresh=True)

    def remove_bar(self, task) -> None:
        if self._bar is not None:
            self._bar.remove_task(task)


class PackEpochs:
    """A pack's (or a trial's) epochs: a bar under the search's on a terminal (trainer.verbose=1;
    nothing where no bar can be drawn), one line per epoch (trainer.verbose=2), nothing (0)."""

    def __init__(self, search: SearchProgress | None, label: str, epochs: int, verbose: int):
        self.label, self.epochs, self.verbose = label, epochs, verbose
        self.search = search
        self._task = search.add_bar(label, epochs) if search is not None and verbose == 1 else None

    @best_effort
    def epoch_ended(
        self, epoch: int, training: int | None, best: tuple[str, float, str] | None, seconds: float
    ) -> None:
        """Epoch `epoch` (from 1) trained `training` trials (None: one trial alone); `best`: (objective,
        value, trial id) so far."""
        if self.verbose == 0 or (self.verbose == 1 and self._task is None):
            return
        parts = [f"{training} training"] if training is not None else []
        if best:
            parts.append(f"best {best[0]} {number(best[1])}" + (f" (trial {best[2]})" if training is not None else ""))
        status = ", ".join([*parts, f"{seconds:.2f} s/epoch"])
        if self._task is not None:
            self.search.update_bar(self._task, epoch, f"epoch {epoch}/{self.epochs}, {status}")
        else:
            say(f"{self.label} epoch {epoch}/{self.epochs}: {status}")

    @best_effort
    def close(self) -> None:
        if self._task is not None:
            self.search.remove_bar(self._task)
            self._task = None
