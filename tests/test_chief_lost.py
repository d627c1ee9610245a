"""Losing the chief while others train: the trials they finish meanwhile are recorded but not
FINISHED (the oracle never took their result), and the resumed search takes their result from
that record instead of training them again. Real processes: a chief killed (-9) under an agent,
with packs and without, on the local store and on a PostgreSQL server; a chief stopped under its
local workers."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient
from processes import Process, slow_epochs, stop_outside_the_store, until
from stores import sqlite_uri
from test_agents import printed_agent_command, start_agent, start_chief, store_file, trial_runs
from test_team_server import start_server

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _slow_epochs(monkeypatch):
    slow_epochs(monkeypatch, 0.5)


TRIALS = 3
# Trials of several seconds (15 epochs of 0.5 s: `slow_epochs`), so that the chief is lost while one
# trains (`training`), and a wait for the chief long enough for that trial (or pack) to finish and be
# recorded first on a loaded machine.
SEARCH = (
    f"tuner.max_trials={TRIALS}",
    "trainer.epochs=15",
    "trainer.early_stopping.enabled=false",
    "model.space.layers=1",
    "tuner.oracle.lease_s=120",
    "tuner.oracle.wait_s=30",
)


def training(uri: str) -> list:
    """The RUNNING trial runs past half their epochs: the chief is lost before they report (their
    record lands first), with little training left for the wait."""
    client = MlflowClient(uri)
    return [r for r in trial_runs(None, "RUNNING", uri) if len(client.get_metric_history(r.info.run_id, "loss")) >= 8]


def recorded_not_finished(uri: str) -> list:
    """Trial runs with their whole record and no FINISHED status: what the lost chief never took."""
    return [
        r for r in trial_runs(None, None, uri) if r.data.tags.get("sweeplab.recorded") and r.info.status != "FINISHED"
    ]


def assert_each_trial_finished_once(uri: str, taken: list) -> None:
    """Every trial has exactly one FINISHED run and none is RUNNING; the `taken` runs (recorded
    before the chief was lost) are those FINISHED runs: their trials were not trained again."""
    runs = trial_runs(None, None, uri)
    finished = Counter(r.data.tags["sweeplab.trial_id"] for r in runs if r.info.status == "FINISHED")
    assert finished == Counter(str(i) for i in range(TRIALS)), finished
    assert not [r for r in runs if r.info.status == "RUNNING"]
    for run in taken:
        again = [r for r in runs if r.data.tags["sweeplab.trial_id"] == run.data.tags["sweeplab.trial_id"]]
        assert [r.info.run_id for r in again] == [run.info.run_id], "trained again"
        (now,) = again
        assert now.info.status == "FINISHED" and "not trained again" in now.data.tags["sweeplab.reconciled"]
        assert "sweeplab.failure" not in now.data.tags


def lose_the_chief_under_an_agent(tmp_path: Path, processes: list, uri: str, *extra: str) -> list:
    """The chief killed (-9) while an agent trains; the agent finishes, cannot report, and stops
    (exit 3). Returns the runs it recorded that the chief never took."""
    chief = start_chief(tmp_path, processes, *SEARCH, *extra, uri=uri)
    agent = start_agent(printed_agent_command(chief), tmp_path, processes, "agent")
    until(lambda: training(uri), 300, "a trial half trained", agent, chief)
    os.killpg(chief.proc.pid, signal.SIGKILL)
    chief.proc.wait()
    assert agent.wait(120) == 3, agent.output()[-3000:]
    taken = recorded_not_finished(uri)
    assert taken, agent.output()[-3000:]
    for run in taken:
        assert run.info.status == "FAILED" and "its record is complete" in run.data.tags["sweeplab.failure"]
    return taken


def resume_with_an_agent(tmp_path: Path, processes: list, uri: str, *extra: str) -> Process:
    """The same search command again, and an agent with the command it prints: both exit 0."""
    again = start_chief(tmp_path, processes, *SEARCH, *extra, uri=uri, log="chief-again.log")
    rejoined = start_agent(printed_agent_command(again), tmp_path, processes, "rejoined")
    assert again.wait(300) == 0, again.output()[-3000:]
    assert rejoined.wait(60) == 0, rejoined.output()[-3000:]
    return again


def test_a_pack_finished_while_the_chief_was_lost_is_taken_from_its_record_not_trained_again(tmp_path, processes):
    uri = sqlite_uri(tmp_path / "mlruns")
    taken = lose_the_chief_under_an_agent(tmp_path, processes, uri, "tuner.pack=2")
    assert len(taken) == 2  # the whole pack
    again = resume_with_an_agent(tmp_path, processes, uri, "tuner.pack=2")
    assert "resuming search" in again.output()
    assert again.output().count("not trained again") == 2
    assert_each_trial_finished_once(uri, taken)


def test_a_trial_finished_while_the_chief_was_lost_is_not_trained_again_on_a_team_server(tmp_path, processes, postgres):
    _, uri = start_server(
        tmp_path, processes, f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres.migrated_name()}"
    )
    server = ("tracking=server", "tuner.pack=1")
    (taken,) = lose_the_chief_under_an_agent(tmp_path, processes, uri, *server)
    resume_with_an_agent(tmp_path, processes, uri, *server)
    assert_each_trial_finished_once(uri, [taken])


def test_trials_finished_by_local_workers_of_a_stopped_chief_are_not_trained_again(tmp_path, processes):
    """The chief stopped (SIGSTOP) while its two workers train: they finish their trials, cannot
    report them, and exit; then the chief is killed and the same command resumes the search."""
    uri = sqlite_uri(tmp_path / "mlruns")
    chief = start_chief(tmp_path, processes, *SEARCH, "tuner.pack=1", workers=2, uri=uri)
    until(lambda: training(uri), 300, "a trial half trained", chief)
    stop_outside_the_store(chief.proc.pid, store_file(tmp_path), group=False)  # not its workers (its group)
    try:
        workers = {int(r.data.tags["sweeplab.worker"].rsplit(":", 1)[1]) for r in trial_runs(None, "RUNNING", uri)}
        until(lambda: not any(_alive(pid) for pid in workers), 120, "the workers to give up on their chief")
    finally:
        os.kill(chief.proc.pid, signal.SIGKILL)
        chief.proc.wait()
    taken = recorded_not_finished(uri)
    assert taken
    again = start_chief(tmp_path, processes, *SEARCH, "tuner.pack=1", workers=2, uri=uri, log="chief-again.log")
    assert again.wait(300) == 0, again.output()[-3000:]
    assert_each_trial_finished_once(uri, taken)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie of the stopped chief counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
