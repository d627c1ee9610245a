"""Real processes for the tests that need them (a chief, agents, a tracking server):
output to a file, each in a process group of its own, stopped at the end of the test."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# `make server`'s settings, which make exports to every recipe (`make test` too): a test's server has its own.
SERVER_SETTINGS = ("DB_URI", "ARTIFACTS", "SERVER_STATE", "TLS_CERT", "TLS_KEY")


# Set by `slow_epochs`: read by tests/slow_epochs/sitecustomize.py in the processes a test starts.
EPOCH_S = "SWEEPLAB_TEST_EPOCH_S"


def slow_epochs(monkeypatch, seconds: float) -> None:
    """Every Keras epoch of the processes this test starts ends `seconds` later (a sleep): trials
    long enough to kill or stop mid-way that train a few batches, not thousands (CPU is what the
    suite runs short of on 2 cores)."""
    monkeypatch.setenv(EPOCH_S, str(seconds))


def env() -> dict:
    """The environment of every process a test starts: this checkout's sweeplab, no store or server
    settings of the caller's, quiet TensorFlow, output written as it comes (tests read it meanwhile)."""
    inherited = {k: v for k, v in os.environ.items() if k not in SERVER_SETTINGS}
    paths = [str(ROOT / "tests" / "slow_epochs")] if os.environ.get(EPOCH_S) else []
    return {
        **inherited,
        "PYTHONPATH": os.pathsep.join([*paths, str(ROOT / "src")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "MLFLOW_TRACKING_URI": "",
        "PYTHONUNBUFFERED": "1",
    }


class Process:
    """A real process with its output in a file, stopped at the end of the test."""

    def __init__(self, args: list, cwd: Path, log: Path, shell: bool = False, extra_env: dict | None = None):
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=cwd,
                env={**env(), **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                shell=shell,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.proc.args} still running after {timeout} s:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to its process group (a server stops what it started), SIGKILL if that is not enough."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def until(condition, timeout: float = 180, what: str = "", *alive: Process):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in alive:
            if process.proc.poll() is not None:
                pytest.fail(
                    f"{process.proc.args} exited ({process.proc.returncode}) before {what}:\n{process.output()[-3000:]}"
                )
        try:
            result = condition()
            if result:
                return result
        except Exception:  # the store may be mid-write
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def stop_outside_the_store(pid: int, db: Path, group: bool = True) -> None:
    """SIGSTOP `pid` (its process group unless `group` is false) at a moment it holds no lock on the
    SQLite store `db`: stopped mid-write it would hold every other process's writes off until resumed."""
    send = os.killpg if group else os.kill
    for _ in range(60):
        send(pid, signal.SIGSTOP)
        if _unlocked(db):
            return
        send(pid, signal.SIGCONT)
        time.sleep(0.2)
    pytest.fail(f"process {pid} held a lock on {db} each of 60 times it was stopped")


def _unlocked(db: Path) -> bool:
    """Whether no other connection holds a lock on `db` (one that does makes BEGIN EXCLUSIVE wait, then fail)."""
    if not db.exists():
        return True
    connection = sqlite3.connect(db, timeout=2, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()
