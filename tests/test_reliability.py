"""What sweeplab promises when things go wrong: a search resumes, Ctrl-C stops it
cleanly, a failing trial does not end the search, bad input fails with one line,
tracking failures and concurrent writers lose nothing, passwords stay out of logs
and unsafe models are refused. Real processes where the promise is about
processes (signals, exit codes, parallel jobs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import processes
import pytest
from conftest import FIXED_MLP
from stores import sqlite_uri

from sweeplab.data.checks import check_arrays
from sweeplab.errors import DataError, TrackingError

TRIAL = "sweeplab.role = 'trial'"


# ---------------------------------------------------------------- helpers


def start_cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """`python -m sweeplab ARGS` in its own process, SIGINT reaching it as Ctrl-C would."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweeplab", *args],
        cwd=cwd,
        env=env or processes.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT; Python then never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = start_cli(args, cwd, env)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri + "?timeout=60")


def runs_of(client, role: str, status: str | None = None) -> list:
    query = f"tags.`sweeplab.role` = '{role}'"
    if status:
        query += f" and attributes.status = '{status}'"
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string=query, max_results=5000) if ids else []


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240, what: str = ""):
    """Poll `condition()` (store reads may race the writer: errors count as 'not yet')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"sweeplab exited ({proc.returncode}) before {what}:\n{out[-3000:]}\n{err[-3000:]}")
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def epochs_logged(db: Path) -> int:
    """How many epochs' training loss the store holds, read like `trial_statuses`."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
        return con.execute("SELECT COUNT(*) FROM metrics WHERE key = 'loss'").fetchone()[0]


def trial_statuses(db: Path) -> dict[str, list[str]]:
    """{trial id: sorted run statuses}, read with plain sqlite3 while a search writes
    (an MlflowClient here could race the writer's schema migration)."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
        rows = con.execute(
            "SELECT t.value, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid"
            " WHERE t.key = 'sweeplab.trial_id'"
        ).fetchall()
    result: dict[str, list[str]] = {}
    for trial_id, status in rows:
        result.setdefault(trial_id, []).append(status)
    return {k: sorted(v) for k, v in sorted(result.items())}


def worker_name(run) -> str:
    """The worker that trained a trial: its `sweeplab.worker` tag, without any `@host:pid`."""
    return run.data.tags["sweeplab.worker"].split("@")[0]


def by_trial(runs) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for run in runs:
        result.setdefault(run.data.tags["sweeplab.trial_id"], []).append(run.info.status)
    return {k: sorted(v) for k, v in sorted(result.items())}


# ---------------------------------------------------------------- bad data (checks.py)

GOOD_X = np.random.default_rng(0).normal(size=(60, 4)).astype("float32")
GOOD_Y = np.arange(60) % 3
SPLIT_20 = {"val_fraction": 0.2, "test_fraction": 0.2}
SPLIT_10 = {"val_fraction": 0.1, "test_fraction": 0.1}


def test_good_arrays_pass():
    check_arrays(GOOD_X, GOOD_Y, source="good.npz", num_classes=3, val_fraction=0.2, test_fraction=0.2)


def _with(a, index, value):
    a = a.copy()
    a[index] = value
    return a


@pytest.mark.parametrize(
    "x, y, kwargs, expected",
    [
        (_with(GOOD_X, (5, 2), np.nan), GOOD_Y, {}, ["NaN or infinite", "index (5, 2)", "finite"]),
        (_with(GOOD_X, (0, 0), np.inf), GOOD_Y, {}, ["1 inputs value(s)", "inf"]),
        (GOOD_X, _with(GOOD_Y, 7, 3), {"num_classes": 3}, ["label 3 out of range", "0..2"]),
        (GOOD_X, _with(GOOD_Y, 7, -1), {}, ["label -1 out of range"]),
        (GOOD_X, GOOD_Y.astype(float) + 0.5, {}, ["not an integer"]),
        (GOOD_X[:0], GOOD_Y[:0], {}, ["no samples"]),
        (GOOD_X[:, 0], GOOD_Y, {}, ["shape (60,)", "at least 2 axes"]),
        (GOOD_X, GOOD_Y[:50], {}, ["60 input rows but 50 labels"]),
        (GOOD_X, GOOD_Y.reshape(60, 1), {}, ["labels have shape (60, 1)", "shape (60,)"]),
        (GOOD_X.astype(str), GOOD_Y, {}, ["dtype <U", "real numbers"]),
        (GOOD_X, _with(GOOD_Y, 0, 7), SPLIT_20, ["class 7 has 1 sample", "at least 3"]),
        (GOOD_X[:12], GOOD_Y[:12], SPLIT_10, ["test split would hold 2 samples for 3 classes"]),
    ],
    ids=[
        "nan",
        "inf",
        "label-high",
        "label-negative",
        "label-float",
        "empty",
        "1d-inputs",
        "length-mismatch",
        "2d-labels",
        "strings",
        "rare-class",
        "tiny-split",
    ],
)
def test_bad_arrays_fail_with_source_value_and_expectation(x, y, kwargs, expected):
    with pytest.raises(DataError) as info:
        check_arrays(x, y, source="data.path=/tmp/bad.npz", **kwargs)
    message = str(info.value)
    assert message.startswith("data.path=/tmp/bad.npz: ")
    for part in expected:
        assert part in message


def test_regression_targets_must_be_finite():
    check_arrays(GOOD_X, GOOD_Y.astype("float32"), source="t", classification=False)
    with pytest.raises(DataError, match="targets value"):
        check_arrays(GOOD_X, _with(GOOD_Y.astype("float32"), 3, np.nan), source="t", classification=False)


@pytest.mark.slow
def test_bad_data_via_cli_exits_nonzero_before_any_run(tmp_path):
    """Too small a test split for 10 classes: one message, exit 2, no store at all."""
    args = ["data.val_fraction=0.001", "data.test_fraction=0.001", f"state_dir={tmp_path / 'state'}"]
    result = run_cli(args, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "test split would hold 2 samples for 10 classes" in result.stderr
    assert "data.test_fraction" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "state").exists()


# ---------------------------------------------------------------- tracking failures


def test_unreachable_tracking_uri_fails_fast_naming_it_without_password(store, make_config):
    from sweeplab.config.validation import validate
    from sweeplab.tracking.store import connect

    cfg = validate(make_config([*store["overrides"], *TINY_FAST, "tracking.uri=http://alice:s3cret@127.0.0.1:9"]))
    started = time.monotonic()
    with pytest.raises(TrackingError) as info:
        connect(cfg.tracking)
    assert time.monotonic() - started < 15  # MLflow's own retries would take about 4 minutes
    assert "http://alice:***@127.0.0.1:9" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_commands_over_an_unreachable_store_fail_fast_naming_it():
    """`python -m sweeplab.report` / `.ensemble` open the store the same way as a search."""
    from sweeplab.tracking.store import open_experiment

    started = time.monotonic()
    with pytest.raises(TrackingError) as info:
        open_experiment("http://carol:hunter2@127.0.0.1:9", "sweeplab-default")
    assert time.monotonic() - started < 15  # MLflow's own retries would take about 4 minutes
    assert "http://carol:***@127.0.0.1:9" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.slow
def test_transient_lock_is_retried_and_the_write_lands(tmp_path, capsys):
    """A real 'database is locked': another connection holds SQLite's write lock
    longer than the client's busy timeout; the retried write still lands."""
    import sqlite3

    from mlflow import MlflowClient

    from sweeplab.tracking.store import RetryingClient

    db = tmp_path / "mlflow.db"
    raw = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment_id = raw.create_experiment("locks", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = raw.create_run(experiment_id).info.run_id
    client = RetryingClient(raw, budget_s=60, first_wait_s=2.0)

    # MLflow waits 20 s (its SQLite busy_timeout) before "database is locked".
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(21, lambda: locker.execute("COMMIT"))
    release.start()
    try:
        client.log_metric(run_id, "val_accuracy", 0.9)
    finally:
        release.join()
        locker.close()
    assert "MLflow log_metric failed" in capsys.readouterr().out  # the first attempt was lost
    assert raw.get_run(run_id).data.metrics == {"val_accuracy": 0.9}


def test_epoch_metrics_written_in_the_background_are_retried_and_kept_in_order(tmp_path, capsys, monkeypatch):
    from conftest import free_port
    from mlflow import MlflowClient

    from sweeplab.tracking.epochs import EpochLogger
    from sweeplab.tracking.store import RetryingClient

    raw = MlflowClient(tracking_uri=sqlite_uri(tmp_path))
    experiment_id = raw.create_experiment("epochs", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = raw.create_run(experiment_id).info.run_id
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # A tracking server that is not there (yet): MLflow's HTTP client raises what it raises then.
    down = MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")

    class DropsTheFirstBatch:
        """The store refusing one write, as a restarting tracking server would."""

        dropped = False
        writers: set[str] = set()

        def __getattr__(self, name):
            return getattr(raw, name)

        def log_batch(self, *args, **kwargs):
            self.writers.add(threading.current_thread().name)
            if not self.dropped:
                self.dropped = True
                return down.log_batch(*args, **kwargs)
            return raw.log_batch(*args, **kwargs)

    store = DropsTheFirstBatch()
    logger = EpochLogger(RetryingClient(store, budget_s=30, first_wait_s=0.01), run_id)
    callback = logger.callback()
    for epoch in range(3):
        callback.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    logger.flush()
    assert "MLflow log_batch failed (API request to http://127.0.0.1" in capsys.readouterr().out
    history = raw.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert logger.history == {"loss": [1.0, 0.5, 1 / 3]}
    # Written off the training thread: fit never waits for the store.
    assert threading.current_thread().name not in store.writers


# ---------------------------------------------------------------- failing trials

TINY_FAST = ["trainer.epochs=2", "trainer.verbose=0", "tracking.log_models=false", "ensemble=none"]


def two_point_grid(store, make_config, *overrides):
    """A grid search of two tiny trials over the point `overrides` leaves open."""
    return make_config([*store["overrides"], *TINY_FAST, *FIXED_MLP, "tuner=grid", "tuner.max_trials=2", *overrides])


def test_diverging_trial_is_failed_with_reason_and_the_search_goes_on(store, make_config):
    from sweeplab.app import run

    cfg = two_point_grid(
        store,
        make_config,
        "trainer.optimizer=sgd",
        "model.space.learning_rate={type:choice,values:[0.01,1.0e9],default:0.01}",
    )
    result = run(cfg)
    assert (result.finished, result.failed) == (1, 1)
    client = client_for(store["uri"])
    failed = runs_of(client, "trial", "FAILED")
    assert len(failed) == 1
    assert failed[0].data.params["learning_rate"] == "1000000000.0"
    reason = failed[0].data.tags["sweeplab.failure"]
    assert "loss became nan" in reason or "loss became inf" in reason
    # Stopped at once (TerminateOnNaN), not after every epoch.
    assert len(client.get_metric_history(failed[0].info.run_id, "loss")) <= 1
    assert len(runs_of(client, "trial", "FINISHED")) == 1


FRAGILE_FAMILY = """
from sweeplab.models import mlp
from sweeplab.models.mlp import *  # the mlp family's schema and rules


def build(values, dataset, cfg):
    if values["layers"] == 2:
        raise ValueError("this builder cannot make 2 layers")
    return mlp.build(values, dataset, cfg)
"""


def test_exception_while_building_fails_that_trial_only(store, make_config, tmp_path, monkeypatch):
    from sweeplab.app import run
    from sweeplab.models import FAMILIES

    (tmp_path / "fragile_mlp.py").write_text(FRAGILE_FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FAMILIES, "mlp", "fragile_mlp")
    cfg = two_point_grid(
        store,
        make_config,
        "model.space.learning_rate=0.01",
        "model.space.layers={type:choice,values:[1,2],default:1}",
    )
    result = run(cfg)
    assert (result.finished, result.failed) == (1, 1)
    client = client_for(store["uri"])
    (failed,) = runs_of(client, "trial", "FAILED")
    assert failed.data.params["layers"] == "2"
    assert "cannot make 2 layers" in failed.data.tags["sweeplab.failure"]
    assert not client.get_metric_history(failed.info.run_id, "loss"), "a model that was never built trained"
    (finished,) = runs_of(client, "trial", "FINISHED")
    assert finished.data.params["layers"] == "1"


@pytest.mark.slow
def test_every_trial_failing_exits_nonzero_with_summary(tmp_path):
    """Every trial diverges (a learning rate of 1e9) and fails; the search tries all
    three; Keras Tuner's failure limit ends in a summary, not a traceback."""
    uri = sqlite_uri(tmp_path / "mlruns")
    result = run_cli(
        [
            f"tracking.uri={uri}",
            f"state_dir={tmp_path / 'state'}",
            *TINY_FAST,
            "tuner.max_trials=3",
            "tuner.max_consecutive_failed_trials=3",
            "trainer.optimizer=sgd",
            "model.space.learning_rate=1.0e9",
            "model.space.activation=relu",
            "model.space.batch_norm=none",
        ],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    # Keras Tuner prints each failed trial's traceback; the search itself ends in a summary.
    assert result.stderr.strip().splitlines()[-1].startswith("sweeplab: every trial of search")
    assert "RuntimeError: Number of consecutive failures" not in result.stderr
    assert "trial 0:" in result.stderr and "trial 2:" in result.stderr
    client = client_for(uri)
    failed = runs_of(client, "trial", "FAILED")
    assert sorted(r.data.tags["sweeplab.trial_id"] for r in failed) == ["0", "1", "2"]
    assert all(r.data.tags["sweeplab.failure"] for r in failed)
    assert [r.info.status for r in runs_of(client, "search")] == ["FAILED"]


@pytest.mark.slow
def test_failure_limit_after_a_finished_trial_stops_the_search_with_exit_2(tmp_path):
    """Grid order: trial 0 (lr 0.01) finishes, trial 1 (lr 1e9) diverges; one failure in a row
    is the limit, so Keras Tuner stops before trial 2: SearchStoppedError, a summary, exit 2."""
    uri = sqlite_uri(tmp_path / "mlruns")
    result = run_cli(
        [
            f"tracking.uri={uri}",
            f"state_dir={tmp_path / 'state'}",
            *TINY_FAST,
            *FIXED_MLP,
            "tuner=grid",
            "tuner.max_trials=3",
            "tuner.max_consecutive_failed_trials=1",
            "trainer.optimizer=sgd",
            "model.space.learning_rate={type:choice,values:[0.01,1.0e9,2.0e9],default:0.01}",
        ],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sweeplab: search mlp-grid-") and " stopped early: " in last, last
    assert "Number of consecutive failures exceeded the limit of 1" in last
    assert "(tuner.max_consecutive_failed_trials=1)" in last
    assert "; 1 trial(s) finished; failed: trial 1: " in last and "loss became" in last
    assert "RuntimeError: Number of consecutive failures" not in result.stderr  # no traceback of the stop
    client = client_for(uri)
    assert by_trial(runs_of(client, "trial")) == {"0": ["FINISHED"], "1": ["FAILED"]}  # trial 2 never ran
    (finished,) = runs_of(client, "trial", "FINISHED")
    assert finished.data.params["learning_rate"] == "0.01"
    (search,) = runs_of(client, "search")
    assert search.info.status == "FAILED"
    assert (search.data.metrics["trials_finished"], search.data.metrics["trials_failed"]) == (1, 1)


# Python imports `sitecustomize` from PYTHONPATH at startup: this one ends the second
# worker process of a search at once, exit code 3 (the chief and worker0 run normally).
CRASHING_WORKER = """
import os

if os.environ.get("KERASTUNER_TUNER_ID") == "worker1":
    os._exit(3)
"""


@pytest.mark.slow
def test_a_worker_exiting_nonzero_stops_the_search_with_exit_2(tmp_path):
    """tuner.workers=2 and worker1 dies on start: worker0 trains the whole budget, then the
    search reports WorkerFailedError as a stop naming worker1 and its exit code: exit 2."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(CRASHING_WORKER)
    env = processes.env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    uri = sqlite_uri(tmp_path / "mlruns")
    args = [
        f"tracking.uri={uri}",
        f"state_dir={tmp_path / 'state'}",
        *TINY_FAST,
        *FIXED_MLP,
        "tuner.max_trials=2",
        "tuner.workers=2",
    ]
    result = run_cli(args, tmp_path, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sweeplab: search mlp-random-") and " stopped early: worker1 exited with 3" in last, last
    assert "worker0" not in last
    assert "2 trial(s) finished" in last
    assert "Traceback" not in result.stderr
    client = client_for(uri)
    (search,) = runs_of(client, "search")
    assert search.info.status == "FAILED"
    assert search.data.metrics["trials_finished"] == 2
    trials = runs_of(client, "trial")
    assert by_trial(trials) == {"0": ["FINISHED"], "1": ["FINISHED"]}
    assert {worker_name(t) for t in trials} == {"worker0"}


def test_a_trial_whose_run_the_store_refuses_to_close_is_said_and_counted(store, make_config, capsys):
    """A user deletes a trial's run in the UI while it trains: MLflow then refuses every write to
    it, marking it FAILED included. The trial is done in the oracle; the output says which run
    could not be closed and why, and the search's summary counts the trial as failed."""
    from sweeplab.app import run

    client = client_for(store["uri"])
    deleted: list[tuple[str, str]] = []  # (run id, trial id)

    def delete_a_trial_run_once_it_trains():
        deadline = time.monotonic() + 300
        while not deleted and time.monotonic() < deadline:
            try:
                for trial in runs_of(client, "trial", "RUNNING"):
                    if client.get_metric_history(trial.info.run_id, "loss"):
                        client.delete_run(trial.info.run_id)
                        deleted.append((trial.info.run_id, trial.data.tags["sweeplab.trial_id"]))
                        return
            except Exception:  # the store may be mid-write
                pass
            time.sleep(0.2)

    deleter = threading.Thread(target=delete_a_trial_run_once_it_trains, daemon=True)
    deleter.start()
    result = run(make_config([*store["overrides"], *FIXED_MLP, *SLOW_TRIALS]))  # one trial at a time, 15 epochs
    deleter.join()
    # Whichever trial was training when the thread looked (the first may have finished already).
    ((run_id, trial_id),) = deleted
    out = capsys.readouterr().out
    assert f"trial {trial_id}: could not mark its run {run_id} FAILED" in out
    assert "must be in the 'active' state" in out
    assert (result.finished, result.failed) == (1, 1)
    assert f"trial {trial_id}: trained, but its record did not land" in out
    assert client.get_run(result.parent_run_id).data.metrics["trials_failed"] == 1


@pytest.mark.parametrize("pack", [1, 2])
def test_a_trial_interrupted_as_it_reports_is_taken_from_its_record_on_resume(store, make_config, monkeypatch, pack):
    """Ctrl-C as the first trial's result goes to the oracle: its run, whose record lands, ends
    KILLED, not FINISHED (the search never took the result); the resumed search takes the result
    from that record instead of training the trial again."""
    from keras_tuner.src.engine import oracle as oracle_module

    from sweeplab.app import run

    end_trial = oracle_module.Oracle.end_trial

    def interrupted_once(oracle, trial):
        monkeypatch.setattr(oracle_module.Oracle, "end_trial", end_trial)
        raise KeyboardInterrupt

    monkeypatch.setattr(oracle_module.Oracle, "end_trial", interrupted_once)
    # Random, not grid: Keras Tuner's grid oracle keeps its order of trials in memory only (no resume).
    cfg = make_config(
        [
            *store["overrides"],
            *TINY_FAST,
            *FIXED_MLP,
            "tuner=random",
            "tuner.max_trials=2",
            f"tuner.pack={pack}",
            "model.space.learning_rate={type:choice,values:[0.01,0.001],default:0.01}",
        ]
    )
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    client = client_for(store["uri"])
    killed = runs_of(client, "trial", "KILLED")
    assert len(killed) == pack and not runs_of(client, "trial", "FINISHED")
    for trial_run in killed:
        assert trial_run.data.tags["sweeplab.recorded"] == "true" and trial_run.data.metrics["test_accuracy"] >= 0
        assert "the search stopped before it took this trial's result" in trial_run.data.tags["sweeplab.failure"]

    result = run(cfg)  # the same search again: it resumes
    assert (result.finished, result.failed) == (2, 0)
    finished = runs_of(client, "trial", "FINISHED")
    assert sorted(r.data.tags["sweeplab.trial_id"] for r in finished) == ["0", "1"]
    assert {r.info.run_id for r in killed} <= {r.info.run_id for r in finished}  # not trained again
    assert len(runs_of(client, "trial")) == 2


# ---------------------------------------------------------------- resume, Ctrl-C, fresh start

SLOW_TRIALS = [
    # One trial at a time: these promises are about the trial that was running (packs: test_packing.py).
    "tuner.pack=1",
    "tuner.max_trials=2",
    "trainer.epochs=15",
    "trainer.batch_size=8",
    "trainer.early_stopping.enabled=false",
    "trainer.verbose=0",
    "tracking.log_models=false",
    "ensemble=none",
]
# The same for a search in its own process: epochs of 0.4 s or more (`slow_epochs`) at little CPU.
SLOW_CLI_TRIALS = [o for o in SLOW_TRIALS if not o.startswith("trainer.batch_size=")]
SLOW_EPOCH_S = 0.4


@pytest.mark.slow
def test_ctrl_c_then_sigkill_then_resume_finishes_the_budget_once(tmp_path, monkeypatch):
    processes.slow_epochs(monkeypatch, SLOW_EPOCH_S)
    uri = sqlite_uri(tmp_path / "mlruns")
    args = [f"tracking.uri={uri}", f"state_dir={tmp_path / 'state'}", *SLOW_CLI_TRIALS]
    client = client_for(uri)

    # 1. Ctrl-C during trial 0.
    proc = start_cli(args, tmp_path)
    db = tmp_path / "mlruns" / "mlflow.db"
    # Into its epochs: past building and tracing its step, however slow a loaded machine makes them.
    wait_for(lambda: trial_statuses(db) == {"0": ["RUNNING"]} and epochs_logged(db) > 0, proc, what="trial 0 training")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[:2000] + "\n...\n" + err[-2000:]
    assert "run the same command again to resume" in err and "Traceback" not in err
    (parent,) = runs_of(client, "search")
    assert parent.info.status == "KILLED"
    assert by_trial(runs_of(client, "trial")) == {"0": ["KILLED"]}
    assert list((tmp_path / "state").rglob("oracle.json")), "tuner state not on disk"

    # 2. Resume; SIGKILL (no cleanup possible) during trial 1, after trial 0 finished.
    proc = start_cli(args, tmp_path)
    wait_for(
        lambda: trial_statuses(db) == {"0": ["FINISHED", "KILLED"], "1": ["RUNNING"]},
        proc,
        what="trial 1 running after trial 0 finished",
    )
    time.sleep(1.0)
    proc.kill()
    proc.communicate(timeout=60)
    assert by_trial(runs_of(client, "trial")) == {"0": ["FINISHED", "KILLED"], "1": ["RUNNING"]}

    # 3. Same command again: trial 1 is marked FAILED and retried, trial 0 is not rerun.
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming search" in result.stdout
    assert [r.info.run_id for r in runs_of(client, "search")] == [parent.info.run_id]
    assert runs_of(client, "search")[0].info.status == "FINISHED"
    assert by_trial(runs_of(client, "trial")) == {"0": ["FINISHED", "KILLED"], "1": ["FAILED", "FINISHED"]}
    interrupted = runs_of(client, "trial", "FAILED")[0]
    assert "interrupted" in interrupted.data.tags["sweeplab.failure"]
    # Every finished trial has its whole record: one loss per epoch, final metrics.
    for run in runs_of(client, "trial", "FINISHED"):
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 15
        assert "final_val_accuracy" in run.data.metrics


@pytest.mark.slow
def test_two_workers_share_one_search_through_ctrl_c_and_resume(tmp_path, monkeypatch):
    processes.slow_epochs(monkeypatch, SLOW_EPOCH_S)
    uri = sqlite_uri(tmp_path / "mlruns")
    args = [
        f"tracking.uri={uri}",
        f"state_dir={tmp_path / 'state'}",
        *SLOW_CLI_TRIALS,
        "tuner.max_trials=4",
        "trainer.epochs=8",
        "tuner.workers=2",
    ]
    client = client_for(uri)
    db = tmp_path / "mlruns" / "mlflow.db"

    # 1. Ctrl-C once a trial has finished: only the search's own process gets it,
    # it passes it on to its workers.
    proc = start_cli(args, tmp_path)
    wait_for(lambda: any("FINISHED" in s for s in trial_statuses(db).values()), proc, what="a finished trial")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[:2000] + "\n...\n" + err[-2000:]
    (parent,) = runs_of(client, "search")
    assert parent.info.status == "KILLED"
    assert not runs_of(client, "trial", "RUNNING"), "a worker left its trial's run RUNNING"

    # 2. Same command: the workers finish the budget; no trial is trained twice.
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r.info.run_id for r in runs_of(client, "search")] == [parent.info.run_id]
    finished = runs_of(client, "trial", "FINISHED")
    assert sorted(r.data.tags["sweeplab.trial_id"] for r in finished) == ["0", "1", "2", "3"]
    # Both workers trained trials, each logging under the one search.
    trials = runs_of(client, "trial")
    assert {worker_name(r) for r in trials} == {"worker0", "worker1"}
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    for run in finished:
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 8
        assert "test_accuracy" in run.data.metrics


def test_overwrite_true_starts_a_fresh_search(store, make_config):
    from sweeplab.app import run

    base = [*store["overrides"], *TINY_FAST, *FIXED_MLP, "tuner.max_trials=1"]
    first = run(make_config(base))
    again = run(make_config(base))
    assert again.parent_run_id == first.parent_run_id  # resumed: nothing new to do
    fresh = run(make_config([*base, "tuner.overwrite=true"]))
    assert fresh.parent_run_id != first.parent_run_id
    client = client_for(store["uri"])
    trials = runs_of(client, "trial", "FINISHED")
    # One trial under each parent: the fresh search retrained trial 0 from new tuner state.
    parents = sorted(r.data.tags["mlflow.parentRunId"] for r in trials)
    assert parents == sorted([first.parent_run_id, fresh.parent_run_id])
    assert len(runs_of(client, "search")) == 2


def test_a_finished_trials_graphs_are_freed(store, make_config, monkeypatch):
    """Memory stays flat across trials: nothing keeps an old trial's traced graphs
    (TensorFlow's gradient registry did, about 7 MiB per trial; bench/memory.py)."""
    import gc
    import weakref

    from tensorflow.python.framework.func_graph import FuncGraph

    from sweeplab.app import run
    from sweeplab.search import tuning

    def live_graphs() -> weakref.WeakSet:
        gc.collect()
        return weakref.WeakSet(o for o in gc.get_objects() if isinstance(o, FuncGraph))

    traced_by_trial: list[tuple[int, weakref.WeakSet]] = []
    run_trial = tuning.TrackedTrials.run_trial

    def observed(self, trial, *args, **kwargs):
        before = set(live_graphs())
        try:
            return run_trial(self, trial, *args, **kwargs)
        finally:
            traced = set(live_graphs()) - before
            traced_by_trial.append((len(traced), weakref.WeakSet(traced)))

    monkeypatch.setattr(tuning.TrackedTrials, "run_trial", observed)
    # One trial at a time, to see each trial's graphs (a pack's: bench/memory.py).
    run(
        make_config([*store["overrides"], *TINY_FAST, *FIXED_MLP, "tuner=random", "tuner.max_trials=3", "tuner.pack=1"])
    )
    assert len(traced_by_trial) == 3
    traced_count, first_trials_graphs = traced_by_trial[0]
    assert traced_count > 0
    gc.collect()
    still_alive = [g.name for g in first_trials_graphs]
    assert not still_alive, f"trial 1's graphs outlived the search: {still_alive[:5]}"


# ---------------------------------------------------------------- concurrent writers, multirun resume


@pytest.mark.slow
def test_four_parallel_jobs_lose_nothing_and_a_rerun_skips_them(tmp_path):
    # No store yet: the four jobs create it together, as a user's first multirun does.
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    args = [
        "-m",
        "model.space.units=16,32,48,64",
        f"tracking.uri={uri}",
        f"state_dir={tmp_path / 'state'}",
        "tuner.max_trials=2",
        "trainer.epochs=2",
        "trainer.verbose=0",
        "ensemble=none",  # the multirun's ensemble: test_multirun.py
    ]
    result = run_cli([*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=4"], tmp_path, timeout=500)
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(uri)

    def snapshot():
        parents = runs_of(client, "search")
        trials = runs_of(client, "trial")
        return parents, trials

    parents, trials = snapshot()
    assert len(parents) == 4 and {p.info.status for p in parents} == {"FINISHED"}
    assert sorted(p.data.params["model.space.units"] for p in parents) == ["16", "32", "48", "64"]
    assert len(trials) == 8 and {t.info.status for t in trials} == {"FINISHED"}
    for parent in parents:
        mine = [t for t in trials if t.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert sorted(t.data.tags["sweeplab.trial_id"] for t in mine) == ["0", "1"]  # no duplicates
        assert "config.yaml" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    units_of = {p.info.run_id: p.data.params["model.space.units"] for p in parents}
    for trial in trials:
        assert trial.data.params["units"] == units_of[trial.data.tags["mlflow.parentRunId"]]
        assert len(client.get_metric_history(trial.info.run_id, "val_loss")) == 2
        assert {"final_val_accuracy", "test_accuracy"} <= set(trial.data.metrics)
        paths = {a.path for a in client.list_artifacts(trial.info.run_id)}
        assert {"learning_curves.png", "model_summary.txt", "predictions.npz"} <= paths
        (model,) = trial.outputs.model_outputs
        assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}

    # The same multirun again, its jobs one after another (which launcher runs a job is not part of
    # its search): each job finds its finished search and trains nothing.
    result = run_cli(args, tmp_path, timeout=500)
    assert result.returncode == 0, result.stderr[-3000:]
    parents_again, trials_again = snapshot()
    assert {p.info.run_id for p in parents_again} == {p.info.run_id for p in parents}
    assert {t.info.run_id for t in trials_again} == {t.info.run_id for t in trials}


# ---------------------------------------------------------------- safety


def test_password_in_a_uri_is_never_logged(tmp_path):
    """The search run's tags hold the Hydra overrides (tracking.uri=... among them) and
    trial params are free text: both reach the store redacted."""
    from mlflow import MlflowClient

    from sweeplab.tracking.runs import SearchRun, TrialRun
    from sweeplab.tracking.store import display_uri, redact
    from sweeplab.tracking.tags import OVERRIDES

    assert redact("postgresql://bob:pw123@127.0.0.1:5432/mlflow") == "postgresql://bob:***@127.0.0.1:5432/mlflow"
    assert display_uri("http://bob:pw123@127.0.0.1:5000") == "http://bob:***@127.0.0.1:5000"

    client = MlflowClient(tracking_uri=sqlite_uri(tmp_path))
    experiment_id = client.create_experiment("safety", artifact_location=(tmp_path / "artifacts").as_uri())
    search = SearchRun(client, experiment_id, "key", fresh=True)
    run_id = search.start(
        name="s",
        tags={OVERRIDES: "tracking.uri=http://bob:pw123@127.0.0.1:5000 tuner=random"},
        params={"data.source": "https://bob:pw123@127.0.0.1/x.npz"},
        config_yaml="{}",
    )
    trial = TrialRun(search, "0", "mlp", {"note": "s3://bob:pw123@bucket/x"})
    for run in (client.get_run(run_id), client.get_run(trial.run_id)):
        stored = repr(run.data.params) + repr(run.data.tags)
        assert "pw123" not in stored and "bob:***@" in stored


@pytest.mark.slow
def test_unreachable_uri_via_cli_prints_no_password(tmp_path):
    result = run_cli(["tracking.uri=http://bob:pw123@127.0.0.1:9", *TINY_FAST], tmp_path, timeout=120)
    assert result.returncode == 2
    assert "http://bob:***@127.0.0.1:9" in result.stderr
    assert "pw123" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


LOAD_PATHS = ["keras-flavor", "keras_average-heads", "keras_average-ensemble"]


def _lambda_net(marker: Path, seed: int, heads: bool = False):
    """A net whose Lambda layer runs Python code: it touches `marker` whenever it runs,
    including while Keras rebuilds the net from its config (an unsafe load)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    doubled = keras.layers.Lambda(
        lambda t, marker: (__import__("pathlib").Path(marker).touch(), t * 2.0)[1],
        arguments={"marker": str(marker)},
        name="doubled",
    )(inputs)
    if heads:
        outputs = {
            "cultivar": keras.layers.Dense(3, activation="softmax", name="cultivar")(doubled),
            "alcohol": keras.layers.Dense(1, name="alcohol")(doubled),
        }
    else:
        outputs = keras.layers.Dense(3, activation="softmax", name="digit")(doubled)
    return keras.Model(inputs, outputs)


def _log_lambda_trial(client, experiment_id: str, marker: Path, seed: int, heads: bool = False) -> str:
    """A FINISHED trial run holding a Lambda net as its logged model, with saved predictions."""
    from sweeplab.data.datasets import Split
    from sweeplab.tracking import batches, predictions, tags
    from sweeplab.tracking.logged_models import log_keras_model

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, 4)).astype("float32")
    y = {"cultivar": np.arange(12) % 3, "alcohol": rng.normal(size=12)} if heads else {"digit": np.arange(12) % 3}

    class Splits:
        val = test = Split({"features": x}, y)

    net = _lambda_net(marker, seed, heads)
    run_id = client.create_run(experiment_id, tags={tags.ROLE: "trial", tags.FAMILY: "mlp"}).info.run_id
    log_keras_model(client, experiment_id, run_id, net, x[:3])
    batches.log_bytes(client, run_id, predictions.to_bytes(predictions.collect(net, Splits)), predictions.ARTIFACT)
    batches.log_metrics(client, run_id, {"final_val_accuracy": 0.5 + seed / 100})
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.mark.parametrize("load_path", LOAD_PATHS)
def test_logged_models_with_a_lambda_layer_are_refused_by_sweeplabs_loaders(tmp_path, load_path):
    """Each way sweeplab logs a model (MLflow's keras flavor for one head; the `keras_average`
    pyfunc for several heads and for ensembles), written to a real store and loaded back as a
    user would: the Lambda layer's code is refused, never run."""
    import keras
    import mlflow
    from mlflow import MlflowClient

    from sweeplab.ensemble import builder as ensemble
    from sweeplab.tracking.logged_models import download_model

    uri = sqlite_uri(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(uri)  # MLflow resolves models:/ URIs against the global store
    experiment_id = client.create_experiment("safety", artifact_location=(tmp_path / "artifacts").as_uri())
    marker = tmp_path / "lambda-ran"
    if load_path == "keras-flavor":
        run_id = _log_lambda_trial(client, experiment_id, marker, seed=1)
    elif load_path == "keras_average-heads":
        run_id = _log_lambda_trial(client, experiment_id, marker, seed=1, heads=True)
    else:
        for seed in (1, 2):
            _log_lambda_trial(client, experiment_id, marker, seed=seed)
        run_id = ensemble.build(client, experiment_id, top_k=2).run_id
    assert marker.exists()  # the Lambda ran while its trial was logged: the marker works

    flavors = mlflow.models.get_model_info(f"runs:/{run_id}/model").flavors
    if load_path == "keras-flavor":
        assert "keras" in flavors
    else:
        assert "keras" not in flavors and flavors["python_function"]["model_code_path"].endswith("keras_average.py")

    marker.unlink()
    with pytest.raises(ValueError) as info:
        mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    message = str(info.value)
    assert "`Lambda` layer" in message and "safe_mode=False" in message
    assert "arbitrary code execution" in message
    assert not marker.exists(), "loading ran the Lambda layer's code"

    # The same file loaded unsafely does run it: the refusal above is what kept it from running.
    model_dir = download_model(client, client.get_run(run_id), tmp_path / "downloaded")
    (keras_file, *_) = sorted(model_dir.rglob("*.keras"))
    keras.saving.load_model(keras_file, compile=False, safe_mode=False)
    assert marker.exists()
