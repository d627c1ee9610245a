"""`make server`: MLflow on PostgreSQL with proxied artifacts, basic auth off
loopback, and searches that survive the server or the database going away for
a moment. Real processes, the machine's PostgreSQL (a private one for the
database outage)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import free_port, unavailable
from logins import call
from mlflow import MlflowClient
from processes import Process, env, until

pytestmark = pytest.mark.slow

PASSWORD = "team-secret-1"


def start_server(
    tmp_path: Path, processes: list, db_uri: str, *args: str, extra_env: dict | None = None, log: str = "server.log"
) -> tuple[Process, str]:
    port = free_port()
    command = [sys.executable, "-m", "sweeplab.tracking.server", "--port", str(port), *args]
    server = Process(
        command,
        tmp_path,
        tmp_path / log,
        extra_env={"DB_URI": db_uri, "ARTIFACTS": str(tmp_path / "server-artifacts"), **(extra_env or {})},
    )
    processes.append(server)
    until(lambda: "MLflow tracking server ready" in server.output(), 300, "the server to be ready", server)
    return server, f"http://127.0.0.1:{port}"


def search(tmp_path: Path, uri: str, *extra: str, log: str = "search.log", extra_env: dict | None = None) -> Process:
    args = [
        sys.executable,
        "-m",
        "sweeplab",
        "tracking=server",
        f"tracking.uri={uri}",
        "tuner.max_trials=2",
        "trainer.epochs=2",
        "trainer.verbose=0",
        f"state_dir={tmp_path / 'state'}",
        *extra,
    ]
    return Process(args, tmp_path, tmp_path / log, extra_env=extra_env)


def test_make_server_creates_its_database_and_logs_a_search_with_proxied_artifacts(tmp_path, processes, postgres):
    name = postgres.new_name()
    assert not postgres.exists(name)
    server, uri = start_server(tmp_path, processes, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    assert postgres.exists(name) and "created database" in server.output()
    assert f"tracking URI: {uri}" in server.output()

    done = search(tmp_path, uri, "ensemble=none")
    assert done.wait() == 0, done.output()[-3000:]
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "sweeplab"]
    trials = client.search_runs([experiment.experiment_id], "tags.`sweeplab.role` = 'trial'")
    assert len(trials) == 2 and postgres.count(name, "runs") == 3  # in PostgreSQL: the search and its trials
    # Artifacts went through the server to ARTIFACTS; the client had no file system in common with it.
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    assert list((tmp_path / "server-artifacts").rglob("learning_curves.png"))
    local = client.download_artifacts(trials[0].info.run_id, "learning_curves.png", str(tmp_path / "down"))
    assert Path(local).stat().st_size > 0

    # Ctrl-C: the server and its workers stop, the port is free again.
    os.killpg(server.proc.pid, signal.SIGINT)
    assert server.wait(30) == 0
    with pytest.raises(OSError):
        __import__("urllib.request").request.urlopen(f"{uri}/health", timeout=2)


def test_off_loopback_the_server_refuses_to_start_without_a_password(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sweeplab.tracking.server", "--host", "0.0.0.0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in env().items() if not k.startswith("SWEEPLAB_ADMIN")},
    )
    assert result.returncode == 2
    assert "SWEEPLAB_ADMIN_PASSWORD" in result.stderr and "HOST=0.0.0.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_with_basic_auth_only_a_login_gets_in(tmp_path, processes, postgres):
    db = f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres.migrated_name()}"
    server, uri = start_server(tmp_path, processes, db, "--auth", extra_env={"SWEEPLAB_ADMIN_PASSWORD": PASSWORD})
    assert PASSWORD not in " ".join(map(str, server.proc.args)) and PASSWORD not in server.output()
    for path in (
        "/api/2.0/mlflow/experiments/search?max_results=10",
        "/api/2.0/mlflow-artifacts/artifacts?path=",
        "/ajax-api/2.0/mlflow/experiments/search?max_results=10",
        "/",
    ):
        assert call(uri, "GET", path)[0] == 401, path
    stranger = search(tmp_path, uri, "ensemble=none", log="stranger.log")
    assert stranger.wait(120) == 2
    assert "401" in stranger.output() or "Unauthorized" in stranger.output()
    # A member who is not admin (added with MLflow's users API) searches in an experiment of its own.
    admin, member = ("admin", PASSWORD), ("member", "member-secret-1")
    assert (
        call(uri, "POST", "/api/2.0/mlflow/users/create", admin, json={"username": member[0], "password": member[1]})[0]
        == 200
    )
    login = {"MLFLOW_TRACKING_USERNAME": member[0], "MLFLOW_TRACKING_PASSWORD": member[1]}
    done = search(tmp_path, uri, "ensemble=none", log="member.log", extra_env=login)
    assert done.wait() == 0, done.output()[-3000:]
    (experiment,) = json.loads(call(uri, "GET", "/api/2.0/mlflow/experiments/search?max_results=10", member)[1])[
        "experiments"
    ]
    assert experiment["name"] == "sweeplab"
    listed = call(uri, "GET", f"/api/2.0/mlflow-artifacts/artifacts?path={experiment['experiment_id']}", member)
    assert listed[0] == 200 and json.loads(listed[1])["files"]


def _every_trial_complete(client, experiment_id: str, trials: int, epochs: int) -> None:
    runs = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'trial'")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["sweeplab.trial_id"] for r in finished) == [
        f"{i:0{len(str(trials))}d}" for i in range(trials)
    ]
    for run in finished:
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == epochs
        assert {"learning_curves.png", "predictions.npz"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        assert run.outputs.model_outputs


@pytest.fixture
def private_postgres(tmp_path):
    """A PostgreSQL server of this test's own (so stopping it disturbs nothing else): (pg_ctl, data dir, port)."""
    bin_dir = Path("/usr/lib/postgresql/15/bin")
    if not (bin_dir / "initdb").exists() or shutil.which("runuser") is None or os.geteuid() != 0:
        unavailable(f"needs {bin_dir}/initdb, runuser and root to start a private PostgreSQL")
    # Outside pytest's folders, which only root may enter.
    home = Path(tempfile.mkdtemp(prefix="sweeplab-pg-"))
    home.chmod(0o755)
    data = home / "data"
    data.mkdir()
    shutil.chown(data, "postgres")
    port = free_port()

    def as_postgres(*command: str) -> None:
        # Output to a file: the server it starts would otherwise hold our pipe open.
        with open(home / "commands.log", "a") as log:
            subprocess.run(
                ["runuser", "-u", "postgres", "--", *command],
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=120,
            )

    as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"

    def pg_ctl(action: str) -> None:
        as_postgres(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(data / "server.log"),
            "-w",
            "-m",
            "fast",
            action,
        )

    pg_ctl("start")
    try:
        yield pg_ctl, port
    finally:
        pg_ctl("stop")
        shutil.rmtree(home, ignore_errors=True)


def test_a_database_stopped_for_a_moment_loses_nothing(tmp_path, processes, private_postgres):
    pg_ctl, pg_port = private_postgres
    server, uri = start_server(tmp_path, processes, f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/sweeplab")
    running = search(tmp_path, uri, "tuner.max_trials=4", "trainer.epochs=3", "ensemble=none")
    client = MlflowClient(uri)
    until(
        lambda: client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            "attributes.status = 'FINISHED' and tags.`sweeplab.role` = 'trial'",
        ),
        180,
        "a first finished trial",
        running,
        server,
    )
    pg_ctl("stop")
    time.sleep(4)
    pg_ctl("start")
    assert running.wait() == 0, running.output()[-3000:]
    (experiment,) = [e for e in client.search_experiments() if e.name == "sweeplab"]
    _every_trial_complete(client, experiment.experiment_id, trials=4, epochs=3)
    assert not re.search(r"database is locked|OperationalError", running.output())


def test_four_agents_train_24_trials_once_against_one_postgresql_server(tmp_path, processes, postgres):
    server, uri = start_server(
        tmp_path, processes, f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres.migrated_name()}"
    )
    chief = search(
        tmp_path,
        uri,
        "tuner.workers=0",
        "tuner.max_trials=24",
        "trainer.epochs=2",
        "ensemble=none",
        "model.space.layers=1",
        log="chief.log",
    )
    processes.append(chief)
    found = until(
        lambda: re.search(r"agents join from any machine with:\n  (.+)\n", chief.output()),
        120,
        "the agent command",
        chief,
    )
    command = found.group(1).replace(" python ", f" {sys.executable} ", 1)
    agents = []
    for i in range(4):
        (tmp_path / f"agent{i}").mkdir()
        agents.append(Process(command, tmp_path / f"agent{i}", tmp_path / f"agent{i}.log", shell=True))
    processes.extend(agents)
    assert chief.wait(600) == 0, chief.output()[-3000:]
    for agent in agents:
        assert agent.wait(60) == 0, agent.output()[-3000:]
        assert not re.search(r"database is locked|OperationalError|Traceback", agent.output()), agent.output()[-2000:]
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "sweeplab"]
    _every_trial_complete(client, experiment.experiment_id, trials=24, epochs=2)
