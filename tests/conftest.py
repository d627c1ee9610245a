"""Shared fixtures: compose real Hydra configs, shrink them, track into tmp_path."""

from __future__ import annotations

import contextlib
import dis
import importlib
import inspect
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
import uuid
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from stores import sqlite_uri

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "src" / "sweeplab" / "conf"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Small enough to run in seconds, big enough to train something real.
TINY = [
    "tuner.max_trials=2",
    "trainer.epochs=2",
    "trainer.verbose=0",
]
# One point of the mlp space: a search over what these leave open (e.g. the learning rate).
FIXED_MLP = [
    "model.space.layers=1",
    "model.space.units=16",
    "model.space.activation=relu",
    "model.space.initializer=glorot_uniform",
    "model.space.batch_norm=none",
    "model.space.dropout=0.0",
]


@pytest.fixture
def no_store(tmp_path, monkeypatch):
    """Where a test's SQLite MLflow store and tuner state go, under tmp_path, with nothing there yet
    (for tests that a bad input creates none); cwd moved there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    return {"uri": uri, "overrides": [f"tracking.uri={uri}", f"state_dir={tmp_path / 'state'}"]}


@pytest.fixture
def store(no_store, tmp_path):
    """A fresh, empty SQLite MLflow store (tests/stores.py) and tuner state dir under tmp_path; cwd moved there."""
    sqlite_uri(tmp_path / "mlruns")
    return no_store


def compose_config(overrides=(), config_name="config"):
    """A real composed config from the package's conf/ (for fixtures of any scope)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture
def make_config():
    """compose(overrides) -> a real composed config from conf/."""
    return compose_config


# --- tiers: `make check` runs the tests that neither train a model nor start a process ----------------

TESTS = Path(__file__).resolve().parent
# What a test refers to, itself or through its fixtures and the helpers of tests/ it calls
# (a qualified name, or an attribute as ".name"), that trains a model or starts a process.
TRAINS = ("sweeplab.app.run", ".fit")
STARTS = ("subprocess", "multiprocessing", "os.fork", "os.system", "os.posix_spawn", "os.exec")
_direct: dict[types.CodeType, tuple[set, list]] = {}


def _ours(obj) -> bool:
    """A function or class written in tests/: what it calls counts as its caller's."""
    try:
        return Path(inspect.getfile(obj)).resolve().is_relative_to(TESTS)
    except TypeError:
        return False


def _named(obj, names: set, helpers: list) -> None:
    if isinstance(obj, types.ModuleType):
        names.add(obj.__name__)
    elif callable(obj) and hasattr(obj, "__qualname__"):
        names.add(f"{getattr(obj, '__module__', '')}.{obj.__qualname__}")
        obj = inspect.unwrap(obj)  # a @contextmanager of tests/ is ours too
        if _ours(obj):
            helpers.extend(vars(obj).values() if inspect.isclass(obj) else [obj])


def _imported(module: str, name: str):
    """`from module import name` of a helper module in tests/ (which may not be imported yet)."""
    if (TESTS / f"{module}.py").exists():
        return getattr(importlib.import_module(module), name, None)
    return None


def _direct_references(func) -> tuple[set, list]:
    """(the names `func`'s own code uses, the functions and classes of tests/ among them)."""
    code = func.__code__
    if code not in _direct:
        names, helpers, codes = set(), [], [code]
        while codes:
            current = codes.pop()
            codes.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
            module = ""
            for instruction in dis.get_instructions(current):
                op, arg = instruction.opname, instruction.argval
                if op == "IMPORT_NAME":
                    module = arg
                    names.add(arg)
                elif op == "IMPORT_FROM":
                    names.add(f"{module}.{arg}")
                    _named(_imported(module, arg), set(), helpers)
                elif op in ("LOAD_ATTR", "LOAD_METHOD"):
                    names.add(f".{arg}")
                elif op in ("LOAD_GLOBAL", "LOAD_NAME") and arg in func.__globals__:
                    _named(func.__globals__[arg], names, helpers)
        _direct[code] = names, helpers
    return _direct[code]


def references(*funcs) -> set[str]:
    """Every name that `funcs` use, and the functions and classes of tests/ they use, transitively."""
    names, seen, todo = set(), set(), [inspect.unwrap(f) for f in funcs]
    while todo:
        func = inspect.unwrap(todo.pop())
        if not hasattr(func, "__code__") or func.__code__ in seen:
            continue
        seen.add(func.__code__)
        own, helpers = _direct_references(func)
        names |= own
        todo.extend(helpers)
    return names


def _any_of(names: set, prefixes: tuple) -> bool:
    return any(n == p or n.startswith(f"{p}.") for n in names for p in prefixes)


def pytest_collection_modifyitems(config, items):
    """Mark `trains` and `processes` by what each test and its fixtures of tests/ call; then order the
    files that start processes first, those that train next: the longest tests start first, so that
    parallel workers (`-n`) end together. A file's tests stay together, in their order."""
    _mark_tiers(items)
    heaviness = {}
    for item in items:
        tier = 0 if item.get_closest_marker("processes") else 1 if item.get_closest_marker("trains") else 2
        heaviness[item.path] = min(tier, heaviness.get(item.path, 2))
    items.sort(key=lambda item: heaviness[item.path])  # stable: each file's own order is kept


def _mark_tiers(items) -> None:
    for item in items:
        fixtures = [
            d.func
            for name, defs in item._fixtureinfo.name2fixturedefs.items()
            for d in defs
            if _ours(d.func) and name != "_stays_in_its_tier"
        ]
        names = references(item.function, *fixtures)
        if _any_of(names, TRAINS):
            item.add_marker(pytest.mark.trains)
        if _any_of(names, STARTS):
            item.add_marker(pytest.mark.processes)


# A fixture wider than one test: a search that several tests of its file read back.
SHARED_FIXTURE = re.compile(r"@pytest\.fixture\([^)]*scope=[\"'](class|module|package|session)[\"']")


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n N` (pytest-xdist): each test to the next free worker, except that the tests of a file with a
    shared fixture all go to one worker, so that its search runs once. (xdist's own `--dist loadgroup`
    no longer groups with pytest 9.2: pytest-dev/pytest-xdist#1386.)"""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    shared = {
        path.relative_to(config.rootpath).as_posix()
        for path in TESTS.glob("test_*.py")
        if SHARED_FIXTURE.search(path.read_text())
    }

    class SharedFixturesOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path in shared else nodeid

    return SharedFixturesOnOneWorker(config, log)


@pytest.fixture(autouse=True)
def _stays_in_its_tier(request, monkeypatch):
    """A test that `make check` runs (marked neither `trains` nor `processes`) fails if it trains
    or starts a process after all: the marks above missed something, and check would be slow."""
    if any(request.node.get_closest_marker(mark) for mark in ("trains", "processes")):
        return

    def refuse(what):
        def refused(*args, **kwargs):
            pytest.fail(
                f"this test {what}, yet is not marked so (extend TRAINS/STARTS in tests/conftest.py, "
                f"or mark it @pytest.mark.{'trains' if what == 'trains a model' else 'processes'})"
            )

        return refused

    # Imported before the patches: importing Keras the first time starts a process (platform.processor).
    import keras

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse("starts a process"))
    monkeypatch.setattr(os, "fork", refuse("starts a process"))
    monkeypatch.setattr(keras.Model, "fit", refuse("trains a model"))


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
    # The caller's environment, not processes.env(): `mlflow models serve -m models:/...` finds the
    # registry through the MLFLOW_TRACKING_URI that the test set.
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    with open(log, "w") as out:
        server = subprocess.Popen(
            [str(bin_dir / command[0]), *map(str, command[1:])],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if server.poll() is not None:
                raise AssertionError(f"{command[0]} exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError as err:
                if time.monotonic() > deadline:
                    message = f"{command[0]} not healthy after {timeout_s} s:\n{log.read_text()[-3000:]}"
                    raise AssertionError(message) from err
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

        def migrated_name(self) -> str:
            """A new database with MLflow's tables, copied from one that MLflow migrated once (a copy
            takes a tenth of a second, the migrations seconds); `make server` creating and migrating
            its own is tested on its own."""
            name = self.new_name()
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_migrated_postgres_template(admin)}"')
            return name

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


def _migrated_postgres_template(admin) -> str:
    """The name of a database that MLflow has migrated, made once per MLflow version on this machine."""
    import mlflow
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    name = "sweeplab_test_template_" + re.sub(r"\W", "_", mlflow.__version__)
    admin.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))  # one test process migrates it
    try:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            admin.execute(f'CREATE DATABASE "{name}"')
            try:
                store = SqlAlchemyStore(
                    f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", tempfile.mkdtemp(prefix="sweeplab-pg-")
                )
                store.engine.dispose()  # a template takes no connections
            except BaseException:
                admin.execute(f'DROP DATABASE "{name}"')
                raise
    finally:
        admin.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))
    return name


@pytest.fixture
def processes():
    """Real processes a test starts (`processes.Process`): killed, group and all, when it ends."""
    started: list = []
    yield started
    for process in started:
        process.stop()
