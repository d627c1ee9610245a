"""Shared fixtures: compose real Hydra configs, shrink them, track into tmp_path."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "src" / "sweeplab" / "conf"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Small enough to run in seconds, big enough to train something real.
TINY = [
    "tuner.max_trials=2",
    "trainer.epochs=2",
    "trainer.verbose=0",
]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store and tuner state dir under tmp_path; cwd moved there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    return {"uri": uri, "overrides": [f"tracking.uri={uri}", f"state_dir={tmp_path / 'state'}"]}


@pytest.fixture
def make_config():
    """compose(overrides) -> a real composed config from conf/."""

    def _compose(overrides=(), config_name="config"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(autouse=True)
def _seed():
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)


def unavailable(reason: str):
    """Skip a test whose machine lacks what it needs; in CI (CI=true), which runs as root beside
    PostgreSQL and installs the rest, fail instead: a skip there would hide an untested feature."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI must run this test, but: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(command: list, port: int, log: Path, timeout_s: float = 120):
    """Run `command` (a venv tool: mlflow ui, mlflow models serve...) until its /health answers;
    stop it, and only it, by its process group when the block ends."""
    bin_dir = Path(sys.executable).parent
    # The venv's tools on PATH (mlflow models serve runs uvicorn from it); a clean stop on SIGTERM.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "w") as out:
        server = subprocess.Popen([str(bin_dir / command[0]), *map(str, command[1:])], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if server.poll() is not None:
                raise AssertionError(f"{command[0]} exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{command[0]} not healthy after {timeout_s} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture
def postgres():
    """The machine's PostgreSQL (127.0.0.1:5432, user postgres, trust authentication), for databases
    named by `postgres.new_name()`; every one of them is dropped afterwards."""
    import psycopg

    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        unavailable(f"no PostgreSQL at 127.0.0.1:5432 (user postgres, trust authentication): {err}")

    class Postgres:
        names: list[str] = []

        def new_name(self) -> str:
            self.names.append(f"sweeplab_test_{uuid.uuid4().hex[:10]}")
            return self.names[-1]

        def create(self, name: str) -> None:
            admin.execute(f'CREATE DATABASE "{name}"')

        def exists(self, name: str) -> bool:
            return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

        def count(self, name: str, table: str) -> int:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as db:
                return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    database = Postgres()
    database.names = []
    with admin:
        yield database
        for name in database.names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def processes():
    """Real processes a test starts (`processes.Process`): killed, group and all, when it ends."""
    started: list = []
    yield started
    for process in started:
        process.stop()
