"""Shared helpers for the benchmarks: configs, clocks, the alternating runner, tables.

Every arm of a comparison runs in its own fresh process (no TensorFlow or
Keras state carries over), the arms alternate in ABBA order within one
invocation so that a machine getting busier or quieter hits every arm alike,
and the scripts report ratios between arms measured side by side.
Timings start after the imports (TensorFlow, Keras Tuner, MLflow) and after
the one-off creation of the MLflow store's schema.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "src" / "sweeplab" / "conf"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --- configs ------------------------------------------------------------------


def compose(overrides: list[str]):
    """A real composed config from conf/, as `python -m sweeplab` would build it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def temp_store(tmp: Path, experiment: str = "bench") -> list[str]:
    """Overrides that track into a fresh SQLite store under `tmp`, created now
    (its schema migration is a one-off cost per store, not per sweep)."""
    from sweeplab.config.schema import TrackingConfig
    from sweeplab.tracking.store import connect

    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    connect(TrackingConfig(uri=uri, experiment=experiment))
    return [f"tracking.uri={uri}", f"tracking.experiment={experiment}", f"state_dir={tmp / 'state'}"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def heavy_imports() -> None:
    """Import what every arm needs before any clock starts."""
    import keras  # noqa: F401
    import keras_tuner  # noqa: F401
    import mlflow  # noqa: F401
    import tensorflow  # noqa: F401


# --- clocks -------------------------------------------------------------------


class Clock:
    """Seconds the training (main) thread spends inside wrapped functions, by bucket; nested
    calls count once. Work on sweeplab's writer thread overlaps training: the user does not wait
    for it, so it is not counted."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._depth = 0

    def wrap(self, owner, name: str, bucket: str) -> None:
        original = getattr(owner, name)
        clock = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if clock._depth or threading.current_thread() is not threading.main_thread():
                return original(*args, **kwargs)
            clock._depth += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock._depth -= 1
                clock.seconds[bucket] = clock.seconds.get(bucket, 0.0) + time.perf_counter() - start
                clock.calls[bucket] = clock.calls.get(bucket, 0) + 1

        setattr(owner, name, timed)

    def get(self, bucket: str) -> float:
        return self.seconds.get(bucket, 0.0)


def clock_fit_and_tracking() -> Clock:
    """Time spent in Keras `fit` and in tracking (MLflow calls, model files, figures)."""
    import keras
    from mlflow import MlflowClient

    from sweeplab.search.tuning import TrackedTrials
    from sweeplab.tracking import plots
    from sweeplab.tracking.runs import TrialRun

    clock = Clock()
    clock.wrap(keras.Model, "fit", "fit")
    for name in (
        "create_run",
        "log_batch",
        "log_text",
        "log_figure",
        "log_artifact",
        "log_artifacts",
        "set_terminated",
        "set_tag",
        "update_run",
        "search_runs",
        "get_metric_history",
    ):
        clock.wrap(MlflowClient, name, "tracking")
    clock.wrap(TrialRun, "log_model", "tracking")
    # What a finished trial's record costs the training thread (the rest is on the writer thread).
    clock.wrap(TrackedTrials, "record_trial", "tracking")
    for name in ("learning_curves", "search_progress"):
        clock.wrap(plots, name, "tracking")
    return clock


# --- the alternating runner ---------------------------------------------------


def abba(arms: list[str], repeats: int) -> list[str]:
    """A B C, C B A, A B C, ...: every arm sits early and late equally often."""
    order = []
    for r in range(repeats):
        order += arms if r % 2 == 0 else arms[::-1]
    return order


def run_arm(script: str, arm: str, args: list[str]) -> dict:
    """Run one arm in a fresh process; it writes its result as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, script, "--worker", arm, "--result", str(out), "--tmp", tmp, *args]
        python_path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": python_path}
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join(proc.stdout.splitlines()[-25:])
            raise RuntimeError(f"arm {arm!r} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())


def alternate(script: str, arms: list[str], repeats: int, args: list[str]) -> dict[str, list[dict]]:
    """Every arm `repeats` times, alternating; results by arm."""
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    for i, arm in enumerate(abba(arms, repeats), 1):
        print(f"  [{i}/{len(arms) * repeats}] {arm} ...", end="", flush=True)
        start = time.perf_counter()
        results[arm].append(run_arm(script, arm, args))
        print(f" {time.perf_counter() - start:.0f} s", flush=True)
    return results


def worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)


def finish_worker(args, result: dict) -> None:
    Path(args.result).write_text(json.dumps(result))


@contextlib.contextmanager
def quiet():
    """Silence a search's own printing (leaderboards, Keras Tuner banners)."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def forward(args, names: list[str]) -> list[str]:
    """The given options as command-line arguments for a worker."""
    out = []
    for name in names:
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


# --- reporting ----------------------------------------------------------------


def mean(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else float("nan")


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def machine() -> str:
    cores = os.cpu_count()
    try:
        load = f"load {os.getloadavg()[0]:.1f}"
    except OSError:
        load = "load n/a"
    return f"{platform.processor() or platform.machine()}, {cores} cores, {load}, Python {platform.python_version()}"


def header(title: str, detail: str) -> None:
    print(f"\n== {title} ==\n{detail}\nmachine: {machine()}", flush=True)


# --- docs/benchmarks.md ---------------------------------------------------------

# `make bench` passes --report docs/benchmarks.md: each script rewrites its own section there.
REPORT = ROOT / "docs" / "benchmarks.md"
PACKAGES = ("sweeplab", "tensorflow-cpu", "keras", "keras-tuner", "mlflow", "optuna")


def report_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report",
        metavar="FILE",
        type=Path,
        help=f"also write this benchmark's section of FILE (make bench: {REPORT.relative_to(ROOT)})",
    )


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def ram_gib() -> str:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB RAM"
    return "RAM n/a"


def versions() -> str:
    found = [f"Python {platform.python_version()}"]
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    return ", ".join(found)


def command_line() -> str:
    """How this run was started, minus --report (so the line can be pasted to rerun it)."""
    argv, kept = sys.argv[1:], []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--report":
            skip = True
        elif not arg.startswith("--report="):
            kept.append(arg)
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return " ".join(["python", str(shown), *kept])


def section(title: str, detail: str, headers: list[str], rows: list[list], ratios: str) -> str:
    """One benchmark's section of docs/benchmarks.md: when, where, what, the table and the ratios."""
    return "\n".join(
        [
            f"## {title}",
            "",
            f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- machine: {cpu_model()}, {os.cpu_count()} cores, {ram_gib()}, {platform.system()} {platform.machine()}",
            f"- versions: {versions()}",
            f"- command: `{command_line()}`",
            f"- setup: {detail}",
            "",
            markdown_table(headers, rows),
            "",
            ratios,
        ]
    )


def write_section(path: Path, name: str, body: str) -> None:
    """Put `body` between the markers of section `name` in the Markdown file at `path`: the section
    is replaced where it is, or appended when new; the rest of the file is kept as it was."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _match: block, text, count=1)
    else:
        text = f"{text.rstrip()}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def publish(args, name: str, title: str, detail: str, headers: list[str], rows: list[list], ratios: str) -> None:
    """Print the table and the ratios; with --report, also write them as section `name` of that file."""
    print()
    print(table(headers, rows))
    print(ratios)
    if getattr(args, "report", None):
        write_section(args.report, name, section(title, detail, headers, rows, ratios))
        print(f"wrote the {name!r} section of {args.report}")
