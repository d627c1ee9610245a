"""Agents: trials of one search trained by `python -m sweeplab.agent` processes,
joined through the command the search prints; faults tested with real
processes (an agent killed mid-trial, the chief killed, a wrong token)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from processes import Process, until

pytestmark = pytest.mark.slow

TRIALS = 4


# Trials of several seconds (tiny batches, one step per call), so that a process killed mid-trial is.
SLOW_TRIALS = ("tuner.max_trials=2", "trainer.batch_size=4", "trainer.steps_per_execution=1", "trainer.epochs=30",
               "trainer.early_stopping.enabled=false")


def start_chief(tmp_path: Path, processes: list, *extra: str, log: str = "chief.log") -> Process:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    args = [sys.executable, "-m", "sweeplab", "tuner.workers=0", f"tuner.max_trials={TRIALS}",
            "trainer.verbose=0", "ensemble=none", f"tracking.uri={uri}", f"state_dir={tmp_path / 'state'}", *extra]
    chief = Process(args, tmp_path, tmp_path / log)
    processes.append(chief)
    return chief


def printed_agent_command(chief: Process) -> str:
    found = until(lambda: re.search(r"agents join from any machine with:\n  (.+)\n", chief.output()), 120,
                  "the agent command", chief)
    command = found.group(1)
    assert " python -m sweeplab.agent " in command
    return command.replace(" python ", f" {sys.executable} ", 1)


def start_agent(command: str, tmp_path: Path, processes: list, name: str) -> Process:
    folder = tmp_path / name  # each agent in a folder of its own, as on another machine
    folder.mkdir()
    agent = Process(command, folder, tmp_path / f"{name}.log", shell=True)
    processes.append(agent)
    return agent


def trial_runs(tmp_path: Path, status: str | None = None) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    query = "tags.`sweeplab.role` = 'trial'" + (f" and attributes.status = '{status}'" if status else "")
    return client.search_runs([e.experiment_id for e in client.search_experiments()], query)


def assert_every_trial_finished_once(tmp_path: Path, trials: int = TRIALS) -> list:
    finished = trial_runs(tmp_path, "FINISHED")
    ids = sorted(r.data.tags["sweeplab.trial_id"] for r in finished)
    assert ids == [str(i) for i in range(trials)], ids
    return finished


def test_a_search_without_local_workers_is_trained_by_two_agents(tmp_path, processes):
    chief = start_chief(tmp_path, processes, "trainer.epochs=2")
    command = printed_agent_command(chief)
    agents = [start_agent(command, tmp_path, processes, f"agent{i}") for i in range(2)]
    assert chief.wait() == 0, chief.output()[-3000:]
    for agent in agents:
        assert agent.wait(60) == 0, agent.output()[-3000:]
    finished = assert_every_trial_finished_once(tmp_path)
    workers = {run.data.tags["sweeplab.worker"] for run in finished}
    # Host and process of each agent (the shell that ran the printed command started them).
    assert len(workers) <= 2 and all(re.fullmatch(rf"agent@{socket.gethostname()}:\d+", w) for w in workers)
    search = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}").get_run(
        finished[0].data.tags["mlflow.parentRunId"])
    assert re.fullmatch(r"127\.0\.0\.1:\d+", search.data.tags["sweeplab.oracle"])
    assert "Leaderboard (by val_accuracy; 4 of 4 finished trials)" in chief.output()


def test_an_agent_killed_mid_trial_loses_its_trial_to_another(tmp_path, processes):
    chief = start_chief(tmp_path, processes, *SLOW_TRIALS, "tuner.oracle.lease_s=4")
    command = printed_agent_command(chief)
    doomed = start_agent(command, tmp_path, processes, "doomed")
    running = until(lambda: trial_runs(tmp_path, "RUNNING"), 180, "the first agent's trial", doomed, chief)
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait()
    lost_at = time.monotonic()
    lost_trial = running[0].data.tags["sweeplab.trial_id"]

    failed = until(lambda: [r for r in trial_runs(tmp_path, "FAILED") if r.info.run_id == running[0].info.run_id],
                   60, "the lost trial's run to end FAILED", chief)
    assert "agent lost" in failed[0].data.tags["sweeplab.failure"]
    assert time.monotonic() - lost_at < 30  # the 4 s lease, plus the chief's polling

    survivor = start_agent(command, tmp_path, processes, "survivor")
    assert chief.wait() == 0, chief.output()[-3000:]
    assert survivor.wait(60) == 0
    finished = assert_every_trial_finished_once(tmp_path, trials=2)
    retried = [r for r in finished if r.data.tags["sweeplab.trial_id"] == lost_trial]
    assert retried[0].data.tags["sweeplab.worker"] != running[0].data.tags["sweeplab.worker"]


def test_a_killed_chief_stops_its_agents_and_a_rerun_resumes(tmp_path, processes):
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

    again = start_chief(tmp_path, processes, *extra, log="chief-again.log")  # the same command
    assert "resuming search" in until(lambda: "resuming search" in again.output() and again.output(), 120,
                                      "the search to resume", again)
    rejoined = start_agent(printed_agent_command(again), tmp_path, processes, "rejoined")
    assert again.wait() == 0, again.output()[-3000:]
    assert rejoined.wait(60) == 0
    assert_every_trial_finished_once(tmp_path, trials=2)
    interrupted = trial_runs(tmp_path, "FAILED")
    assert interrupted and all(r.data.tags.get("sweeplab.failure") for r in interrupted)


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
