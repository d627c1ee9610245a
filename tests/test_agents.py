"""Agents: trials of one search trained by `python -m sweeplab.agent` processes,
joined through the command the search prints; faults tested with real
processes (an agent killed mid-trial, an agent or a local worker stalled past
its lease, two agents with one host name and process id, the chief killed, a
wrong token)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient
from processes import Process, slow_epochs, stop_outside_the_store, until
from stores import sqlite_uri

pytestmark = pytest.mark.slow

TRIALS = 4


# Trials of 15 s or more (30 epochs of 0.5 s: `slow_epochs`), one at a time, so that a process
# killed or stopped mid-trial is.
SLOW_TRIALS = (
    "tuner.max_trials=2",
    "tuner.pack=1",
    "trainer.epochs=30",
    "trainer.early_stopping.enabled=false",
)
SLOW_EPOCH_S = 0.5
# Trials of a few seconds (`slow_epochs`), one at a time, for two agents that each wait, stopped, while
# the other starts (`start_two_agents_that_both_train`): a lease that outlasts the other's start.
SHARED_TRIALS = (
    "tuner.pack=1",
    "trainer.epochs=4",
    "trainer.early_stopping.enabled=false",
    "tuner.oracle.lease_s=300",
    "tuner.oracle.wait_s=60",
)
# A short lease, so that a stalled process loses its trial within seconds, yet one that a healthy
# process keeps on a loaded machine; shorter trials than SLOW_TRIALS (a stopped process is stopped
# whatever the trial's length), also of slow epochs.
SHORT_LEASE = ("tuner.oracle.lease_s=15", "tuner.oracle.wait_s=8")
STALLED_TRIALS = (
    "tuner.max_trials=2",
    "tuner.pack=1",
    "trainer.epochs=8",
    "trainer.early_stopping.enabled=false",
)
AGENT_TAG = r"agent-[0-9a-f]{6}@" + re.escape(socket.gethostname()) + r":(\d+)"


def store_file(tmp_path: Path) -> Path:
    return tmp_path / "mlruns" / "mlflow.db"


def start_chief(
    tmp_path: Path, processes: list, *extra: str, log: str = "chief.log", workers: int = 0, uri: str | None = None
) -> Process:
    """A search served for agents (`workers` local ones too), logged to `uri` (default: sqlite in tmp_path)."""
    uri = uri or sqlite_uri(tmp_path / "mlruns")
    args = [
        sys.executable,
        "-m",
        "sweeplab",
        f"tuner.workers={workers}",
        f"tuner.max_trials={TRIALS}",
        "trainer.verbose=0",
        "ensemble=none",
        f"tracking.uri={uri}",
        f"state_dir={tmp_path / 'state'}",
        *extra,
    ]
    chief = Process(args, tmp_path, tmp_path / log)
    processes.append(chief)
    return chief


def printed_agent_command(chief: Process) -> str:
    found = until(
        lambda: re.search(r"agents join from any machine with:\n  (.+)\n", chief.output()),
        120,
        "the agent command",
        chief,
    )
    command = found.group(1)
    assert " python -m sweeplab.agent " in command
    return command.replace(" python ", f" {sys.executable} ", 1)


def start_agent(command: str, tmp_path: Path, processes: list, name: str) -> Process:
    folder = tmp_path / name  # each agent in a folder of its own, as on another machine
    folder.mkdir()
    agent = Process(command, folder, tmp_path / f"{name}.log", shell=True)
    processes.append(agent)
    return agent


def trial_runs(tmp_path: Path, status: str | None = None, uri: str | None = None) -> list:
    client = MlflowClient(uri or sqlite_uri(tmp_path / "mlruns"))
    query = "tags.`sweeplab.role` = 'trial'" + (f" and attributes.status = '{status}'" if status else "")
    return client.search_runs([e.experiment_id for e in client.search_experiments()], query)


def assert_every_trial_finished_once(tmp_path: Path, trials: int = TRIALS) -> list:
    finished = trial_runs(tmp_path, "FINISHED")
    ids = sorted(r.data.tags["sweeplab.trial_id"] for r in finished)
    assert ids == [str(i) for i in range(trials)], ids
    return finished


def trained_by(finished: list) -> Counter:
    """{tag sweeplab.worker: how many of `finished` it trained}."""
    return Counter(run.data.tags["sweeplab.worker"] for run in finished)


def start_two_agents_that_both_train(start, running, *alive: Process, db: Path | None = None) -> list[Process]:
    """Two agents (`start(name)` starts one; `running()`: the RUNNING trial runs; `db`: the SQLite
    store's file, if they write to one), each certain to train a trial however loaded the machine:
    the first waits, stopped, until the second trains one; the second then waits, stopped, until
    the first does."""
    first = start("agent0")
    os.killpg(first.proc.pid, signal.SIGSTOP)  # before it has even imported MLflow
    second = start("agent1")
    try:
        (held,) = until(running, 300, "the second agent's trial", second, *alive)
        if db:
            stop_outside_the_store(second.proc.pid, db)
        else:  # a tracking server: the agent holds no lock the others wait for
            os.killpg(second.proc.pid, signal.SIGSTOP)
        os.killpg(first.proc.pid, signal.SIGCONT)
        until(
            lambda: [r for r in running() if r.info.run_id != held.info.run_id],
            300,
            "the first agent's trial",
            first,
            *alive,
        )
    finally:
        for agent in (first, second):
            os.killpg(agent.proc.pid, signal.SIGCONT)
    return [first, second]


def two_agents_train_a_search(tmp_path, processes, wrap=lambda command: command):
    """A chief of SHARED_TRIALS and two agents (its printed command, `wrap`ped) that both train:
    (the chief, the `sweeplab.worker` tags of the finished trials) once all have exited 0."""
    chief = start_chief(tmp_path, processes, *SHARED_TRIALS)
    command = wrap(printed_agent_command(chief))
    agents = start_two_agents_that_both_train(
        lambda name: start_agent(command, tmp_path, processes, name),
        lambda: trial_runs(tmp_path, "RUNNING"),
        chief,
        db=store_file(tmp_path),
    )
    assert chief.wait() == 0, chief.output()[-3000:]
    for agent in agents:
        assert agent.wait(60) == 0, agent.output()[-3000:]
    return chief, trained_by(assert_every_trial_finished_once(tmp_path))


def test_a_search_without_local_workers_is_trained_by_two_agents_even_with_one_host_name_and_process_id(
    tmp_path, processes, monkeypatch
):
    """Two agents as two containers would start them: one host name, and each agent process 1
    (here: a PID namespace each). Without `unshare` and root, two plain agents."""
    slow_epochs(monkeypatch, SLOW_EPOCH_S)
    in_namespaces = shutil.which("unshare") is not None and os.geteuid() == 0
    chief, workers = two_agents_train_a_search(
        tmp_path,
        processes,
        (lambda command: f"unshare --pid --fork --mount-proc sh -c {shlex.quote(command)}")
        if in_namespaces
        else (lambda command: command),
    )
    # Each agent trained some (its tuner id, host and process).
    assert len(workers) == 2 and all(re.fullmatch(AGENT_TAG, w) for w in workers), workers
    if in_namespaces:  # the same host name and process id, yet two agents
        assert len({re.fullmatch(AGENT_TAG, w).group(1) for w in workers}) == 1, workers
    search = MlflowClient(sqlite_uri(tmp_path / "mlruns")).get_run(
        trial_runs(tmp_path)[0].data.tags["mlflow.parentRunId"]
    )
    assert re.fullmatch(r"127\.0\.0\.1:\d+", search.data.tags["sweeplab.oracle"])
    assert "Leaderboard (by val_accuracy; 4 of 4 finished trials)" in chief.output()


def test_an_agent_killed_mid_trial_loses_its_trial_to_another(tmp_path, processes, monkeypatch):
    slow_epochs(monkeypatch, SLOW_EPOCH_S)
    chief = start_chief(tmp_path, processes, *SLOW_TRIALS, *SHORT_LEASE)
    command = printed_agent_command(chief)
    doomed = start_agent(command, tmp_path, processes, "doomed")
    running = until(lambda: trial_runs(tmp_path, "RUNNING"), 180, "the first agent's trial", doomed, chief)
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait()
    lost_at = time.monotonic()
    lost_trial = running[0].data.tags["sweeplab.trial_id"]

    failed = until(
        lambda: [r for r in trial_runs(tmp_path, "FAILED") if r.info.run_id == running[0].info.run_id],
        60,
        "the lost trial's run to end FAILED",
        chief,
    )
    assert "agent lost" in failed[0].data.tags["sweeplab.failure"]
    assert time.monotonic() - lost_at < 60  # the 15 s lease, plus the chief's polling

    survivor = start_agent(command, tmp_path, processes, "survivor")
    assert chief.wait() == 0, chief.output()[-3000:]
    assert survivor.wait(60) == 0
    finished = assert_every_trial_finished_once(tmp_path, trials=2)
    retried = [r for r in finished if r.data.tags["sweeplab.trial_id"] == lost_trial]
    assert retried[0].data.tags["sweeplab.worker"] != running[0].data.tags["sweeplab.worker"]


def test_an_agent_stalled_past_its_lease_cannot_finish_the_trial_handed_to_another(tmp_path, processes, monkeypatch):
    """SIGSTOP mid-trial, past the lease: the trial goes to another agent; after SIGCONT the stalled
    agent stops training it, its run ends FAILED, and the new owner's run FINISHED."""
    slow_epochs(monkeypatch, SLOW_EPOCH_S)
    chief = start_chief(tmp_path, processes, *STALLED_TRIALS, *SHORT_LEASE)
    command = printed_agent_command(chief)
    stalled = start_agent(command, tmp_path, processes, "stalled")
    (lost,) = until(lambda: trial_runs(tmp_path, "RUNNING"), 180, "the first agent's trial", stalled, chief)
    stop_outside_the_store(stalled.proc.pid, store_file(tmp_path))
    try:
        until(
            lambda: [r for r in trial_runs(tmp_path, "FAILED") if r.info.run_id == lost.info.run_id],
            60,
            "the stalled agent's run to end FAILED",
            chief,
        )
        owner = start_agent(command, tmp_path, processes, "owner")
        trial_id = lost.data.tags["sweeplab.trial_id"]
        until(
            lambda: [r for r in trial_runs(tmp_path, "RUNNING") if r.data.tags["sweeplab.trial_id"] == trial_id],
            180,
            "the new owner's run of the lost trial",
            owner,
            chief,
        )
    finally:
        os.killpg(stalled.proc.pid, signal.SIGCONT)
    # Its writes of the trial are done once it has rejoined, or found the search over.
    assert stalled.wait(240) in (0, 3), stalled.output()[-3000:]
    assert chief.wait() == 0, chief.output()[-3000:]
    assert owner.wait(60) == 0, owner.output()[-3000:]
    finished = assert_every_trial_finished_once(tmp_path, trials=2)
    client = MlflowClient(sqlite_uri(tmp_path / "mlruns"))
    assert client.get_run(lost.info.run_id).info.status == "FAILED"
    (retried,) = [r for r in finished if r.data.tags["sweeplab.trial_id"] == trial_id]
    assert retried.data.tags["sweeplab.worker"] != lost.data.tags["sweeplab.worker"]
    assert "lease expired" in stalled.output()
    # It stopped at once, before its trial's last epoch (8), with why.
    assert len(client.get_metric_history(lost.info.run_id, "loss")) < 8
    assert "LeaseLostError" in client.get_run(lost.info.run_id).data.tags["sweeplab.failure"]
    assert "stopping its trial" in stalled.output()


def test_a_local_worker_stalled_past_its_lease_rejoins_and_the_search_finishes(tmp_path, processes, monkeypatch):
    slow_epochs(monkeypatch, SLOW_EPOCH_S)
    chief = start_chief(tmp_path, processes, *STALLED_TRIALS, *SHORT_LEASE, "tuner.max_trials=3", workers=2)
    (lost,) = until(lambda: trial_runs(tmp_path, "RUNNING")[:1], 180, "a worker's trial", chief)
    pid = int(lost.data.tags["sweeplab.worker"].rsplit(":", 1)[1])
    stop_outside_the_store(pid, store_file(tmp_path), group=False)
    try:
        until(
            lambda: [r for r in trial_runs(tmp_path, "FAILED") if r.info.run_id == lost.info.run_id],
            60,
            "the stalled worker's run to end FAILED",
            chief,
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    assert chief.wait() == 0, chief.output()[-3000:]
    assert re.search(r"rejoining the search as worker\d-[0-9a-f]{6}", chief.output())
    assert_every_trial_finished_once(tmp_path, trials=3)
    client = MlflowClient(sqlite_uri(tmp_path / "mlruns"))
    assert client.get_run(lost.info.run_id).info.status == "FAILED"


def test_a_killed_chief_stops_its_agents_and_a_rerun_resumes(tmp_path, processes, monkeypatch):
    slow_epochs(monkeypatch, SLOW_EPOCH_S)
    extra = (*SLOW_TRIALS, "tuner.oracle.wait_s=4")
    chief = start_chief(tmp_path, processes, *extra)
    agent = start_agent(printed_agent_command(chief), tmp_path, processes, "agent")
    until(lambda: trial_runs(tmp_path, "RUNNING"), 180, "a running trial", agent, chief)
    os.killpg(chief.proc.pid, signal.SIGKILL)
    chief.proc.wait()
    killed_at = time.monotonic()
    assert agent.wait(60) == 3
    assert time.monotonic() - killed_at < 30  # its 4 s wait, plus a heartbeat
    assert "has not answered for 4 s" in agent.output()
    # The agent itself failed its trial's run, with why (no chief was left to do it).
    (abandoned,) = trial_runs(tmp_path, "FAILED")
    assert "has not answered for 4 s" in abandoned.data.tags["sweeplab.failure"]
    assert not trial_runs(tmp_path, "RUNNING")

    again = start_chief(tmp_path, processes, *extra, log="chief-again.log")  # the same command
    assert "resuming search" in until(
        lambda: "resuming search" in again.output() and again.output(), 120, "the search to resume", again
    )
    rejoined = start_agent(printed_agent_command(again), tmp_path, processes, "rejoined")
    assert again.wait() == 0, again.output()[-3000:]
    assert rejoined.wait(60) == 0
    assert_every_trial_finished_once(tmp_path, trials=2)
    # The abandoned run stays FAILED with why, unless its trial finished and was recorded in full while
    # the agent stopped: then the resumed search took its result from it (test_chief_lost.py).
    again_failed = trial_runs(tmp_path, "FAILED")
    assert all(r.data.tags.get("sweeplab.failure") for r in again_failed)
    if not again_failed:
        (taken,) = [r for r in trial_runs(tmp_path, "FINISHED") if r.info.run_id == abandoned.info.run_id]
        assert "not trained again" in taken.data.tags["sweeplab.reconciled"]


def test_an_agent_with_the_wrong_token_is_refused_and_changes_nothing(tmp_path, processes):
    chief = start_chief(tmp_path, processes, "trainer.epochs=1")
    command = printed_agent_command(chief)
    impostor = re.sub(r'SWEEPLAB_ORACLE_TOKEN="[^"]*"', "SWEEPLAB_ORACLE_TOKEN=guess", command)
    refused = start_agent(impostor, tmp_path, processes, "impostor")
    assert refused.wait(120) != 0
    assert refused.proc.returncode == 3 and "refused this worker" in refused.output()
    assert "missing or wrong token" in chief.output()
    assert trial_runs(tmp_path) == []
    chief.stop()
