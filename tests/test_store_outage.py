"""A tracking server that goes away during a search: what MLflow's HTTP client really
raises is retried by sweeplab's own layer, within a deadline, and the search loses
nothing. A real `mlflow server` on SQLite, stopped and started again on its port."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from processes import Process, until
from stores import sqlite_uri

RETRYING = "[sweeplab] MLflow "


def closed_port_client() -> MlflowClient:
    """A client of a tracking server that is not there: MLflow raises what it raises then."""
    return MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")


def test_a_refused_connection_is_transient_and_a_bad_request_is_not(tmp_path, monkeypatch):
    from sweeplab.tracking.store import is_transient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException) as refused:
        closed_port_client().log_metric("0" * 32, "loss", 1.0)
    assert refused.value.error_code == "INTERNAL_ERROR" and "Connection refused" in str(refused.value)
    assert is_transient(refused.value)
    with pytest.raises(MlflowException) as missing:
        MlflowClient(sqlite_uri(tmp_path)).log_metric("0" * 32, "loss", 1.0)
    assert not is_transient(missing.value)


class RecordsTries:
    """A real client that notes when each of its log_metric calls starts."""

    def __init__(self, client):
        self.client, self.tries = client, []

    def log_metric(self, *args, **kwargs):
        self.tries.append(time.monotonic())
        return self.client.log_metric(*args, **kwargs)


def test_a_write_retries_within_its_budget_then_gives_up(monkeypatch, capsys):
    from sweeplab.tracking.store import MLFLOW_HTTP_SETTINGS, RetryingClient, use_short_http_retries

    for key in MLFLOW_HTTP_SETTINGS:  # unset, and put back as they were when the test ends
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # a user's own setting
    use_short_http_retries()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == MLFLOW_HTTP_SETTINGS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "0"
    store = RecordsTries(closed_port_client())
    client = RetryingClient(store, budget_s=3, first_wait_s=1.0)
    started = time.monotonic()
    with pytest.raises(MlflowException):
        client.log_metric("0" * 32, "loss", 1.0)
    # Tries at 0, 1 and 3 s (waits of 1 and 2 s), none after the budget; MLflow's own retries
    # (two, no backoff here) happen within each try instead of multiplying the waits.
    assert len(store.tries) >= 2 and all(t - started <= 3 for t in store.tries), [t - started for t in store.tries]
    assert capsys.readouterr().out.count("MLflow log_metric failed (API request to") == len(store.tries) - 1


def test_a_bad_write_budget_fails_before_the_store_is_touched(no_store, make_config, monkeypatch):
    from sweeplab.config.validation import validate
    from sweeplab.errors import TrackingError
    from sweeplab.tracking.store import connect

    monkeypatch.setenv("SWEEPLAB_WRITE_BUDGET_S", "two minutes")
    with pytest.raises(TrackingError, match="SWEEPLAB_WRITE_BUDGET_S: got 'two minutes'; expected a number"):
        connect(validate(make_config(no_store["overrides"])).tracking)
    assert not Path("mlruns").exists()


def start_server(tmp_path: Path, processes: list, port: int, log: str) -> Process:
    bin_dir = Path(sys.executable).parent
    server = Process(
        [
            str(bin_dir / "mlflow"),
            "server",
            "--backend-store-uri",
            sqlite_uri(tmp_path, "server.db"),
            "--serve-artifacts",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        tmp_path,
        tmp_path / log,
        extra_env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    processes.append(server)
    until(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200,
        180,
        "the tracking server to answer",
        server,
    )
    return server


def finished_trials(client: MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "attributes.status = 'FINISHED' and tags.`sweeplab.role` = 'trial'")


@pytest.mark.slow
def start_slow_search(tmp_path, uri: str) -> Process:
    """Trials of several seconds, each epoch's metrics written while the next one trains."""
    return Process(
        [
            sys.executable,
            "-m",
            "sweeplab",
            f"tracking.uri={uri}",
            f"state_dir={tmp_path / 'state'}",
            "tuner.max_trials=3",
            "tuner.pack=1",
            "trainer.epochs=12",
            "trainer.batch_size=8",
            "trainer.steps_per_execution=1",
            "trainer.early_stopping.enabled=false",
            "trainer.verbose=0",
            "ensemble=none",
        ],
        tmp_path,
        tmp_path / "search.log",
        # Longer than the server may take to start again on a loaded machine.
        extra_env={"SWEEPLAB_WRITE_BUDGET_S": "900"},
    )


def test_a_server_restarted_during_a_search_loses_nothing(tmp_path, processes):
    port = free_port()
    server = start_server(tmp_path, processes, port, "server.log")
    uri = f"http://127.0.0.1:{port}"
    running = start_slow_search(tmp_path, uri)
    processes.append(running)
    client = MlflowClient(uri)
    until(lambda: finished_trials(client), 600, "a first finished trial", running, server)
    server.stop()
    # The outage reached sweeplab's own retries (MLflow's gave up after a few seconds).
    until(
        lambda: RETRYING in running.output() and "; retrying in" in running.output(),
        300,
        "a write to meet the stopped server",
        running,
    )
    start_server(tmp_path, processes, port, "server-again.log")
    assert running.wait(1200) == 0, running.output()[-3000:]
    retried = [line for line in running.output().splitlines() if line.startswith(RETRYING)]
    assert retried and all("API request to" in line for line in retried), retried
    finished = finished_trials(client)
    assert sorted(r.data.tags["sweeplab.trial_id"] for r in finished) == ["0", "1", "2"]
    for run in finished:
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 12
        assert {"learning_curves.png", "predictions.npz"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        assert run.outputs.model_outputs
    # A bad request to the server that is back is no outage: not retried.
    from sweeplab.tracking.store import is_transient

    with pytest.raises(MlflowException) as missing:
        client.get_run("0" * 32)
    assert not is_transient(missing.value)
