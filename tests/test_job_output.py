"""Output a person reads while work runs elsewhere: each line of a multirun's job starts with the job's
name (real multiruns, both launchers); a chief waiting for agents keeps one status line (a real chief
and agent); workers and agents say which tuner id they train as and how many trials it trained; the
end of a sweep says "open" when a UI (a real `mlflow ui`) answers, else how to start one."""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from conftest import free_port, serving
from processes import env
from stores import sqlite_uri
from test_agents import printed_agent_command, start_agent, start_chief

from sweeplab.job_names import job_name
from sweeplab.search import job_lines
from sweeplab.search.chief_status import StatusLine
from sweeplab.tracking import ui

ALL_SEARCHES = "[sweeplab] experiment 'sweeplab', all searches"
HYDRA_LOG = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\]\[HYDRA\]")
NAMES = {"family": "mlp", "tuner": "random"}


# --- a job's name -----------------------------------------------------------------------------------


def test_a_job_is_named_by_its_family_and_tuner_and_the_other_keys_its_multirun_sweeps():
    fixed = ["tuner.max_trials=1", "trainer.epochs=1"]
    assert job_name(NAMES, ["tuner=random,grid", *fixed], ["tuner=random", *fixed], 0) == "mlp/random"
    assert job_name(NAMES, ["model.units=32,64", *fixed], ["model.units=32", *fixed], 0) == "mlp/random units=32"
    sweep = ["seed=1,2", "tuner.seed=range(3,5)", "data=digits,wine_multi"]
    job = ["seed=2", "tuner.seed=4", "data=digits"]
    assert job_name(NAMES, sweep, job, 3) == "mlp/random seed=2 tuner.seed=4 data=digits"
    # A model choice named otherwise than its family is shown.
    assert job_name(NAMES, ["model=mlp,lab_mlp"], ["model=lab_mlp"], 1) == "mlp/random model=lab_mlp"
    assert job_name(NAMES, None, ["model.units=32"], 5) == "mlp/random #5"


# --- the writer that prefixes a job's lines -------------------------------------------------------


def test_every_line_a_job_writes_starts_with_its_name_and_everything_is_given_back(capsys, monkeypatch):
    monkeypatch.delenv(job_lines.ENV_PREFIX, raising=False)
    log = logging.getLogger("sweeplab-test-job-lines")
    before = logging.StreamHandler(sys.stdout)  # given the stream before the job: Hydra's, say
    log.addHandler(before)
    log.propagate = False
    try:
        stdout = sys.stdout
        with job_lines.prefixed("[mlp/random] "):
            print("one")
            sys.stdout.write("two, in ")
            sys.stdout.write("pieces\n\nthree\r\n")
            sys.stdout.write("\rbar 1/2\b\b\b\rbar 2/2\n")  # Keras' progress bar redraws its line
            print("warned", file=sys.stderr)
            log.warning("logged")
            during = logging.StreamHandler(sys.stderr)  # made during the job: MLflow's, say
            log.addHandler(during)
            assert not sys.stdout.isatty() and os.environ[job_lines.ENV_PREFIX] == "[mlp/random] "
            sys.stdout.close()  # absl closes the stream of its handler: stdout stays open
        print("after")
        assert sys.stdout is stdout and job_lines.ENV_PREFIX not in os.environ
        assert before.stream is stdout and during.stream is sys.stderr
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
    captured = capsys.readouterr()
    assert captured.out.split("\n") == [
        "[mlp/random] one",
        "[mlp/random] two, in pieces",
        "[mlp/random]",
        "[mlp/random] three\r",
        "\r[mlp/random] bar 1/2\b\b\b\r[mlp/random] bar 2/2",
        "[mlp/random] logged",
        "after",
        "",
    ]
    assert captured.err == "[mlp/random] warned\n"


def test_a_jobs_output_is_not_a_terminal_even_on_one(monkeypatch):
    """Other jobs share the terminal: bars and the chief's status print plain lines there."""
    leader, follower = os.openpty()  # a real terminal
    with open(follower, "w") as terminal, open(leader, "rb", buffering=0):
        monkeypatch.setattr(sys, "stdout", terminal)
        assert sys.stdout.isatty() and StatusLine().in_place
        with job_lines.prefixed("[mlp/random] "):
            assert not sys.stdout.isatty() and not StatusLine().in_place


def test_a_single_run_has_no_prefix(capsys):
    with job_lines.prefixed(None):
        print("plain")
    assert capsys.readouterr().out == "plain\n"


# --- the chief's status line ----------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_status_lines_come_when_the_status_changes_at_most_every_few_seconds():
    out, clock = io.StringIO(), Clock()
    status = StatusLine(out, in_place=False, every_s=5, clock=clock)
    shown = [(0, "A"), (1, "A"), (2, "B"), (3, "C"), (4, "C"), (5, "C"), (6, "C"), (7, "D"), (8, "C"), (11, "C")]
    for now, text in shown:
        clock.now = now
        status.show(text)
    assert out.getvalue() == "A\nC\n"  # B lasted less than the interval; D came back to C; C is not said twice
    clock.now = 12
    status.show("E")
    status.close()  # the last status, held back, is printed at the end
    assert out.getvalue() == "A\nC\nE\n"


def test_on_a_terminal_the_status_is_one_line_redrawn_in_place():
    out = io.StringIO()
    status = StatusLine(out, in_place=True)
    for text in ["A", "A", "B"]:
        status.show(text)
    status.close()
    assert out.getvalue() == "\rA\x1b[K\rB\x1b[K\n"


STATUS = "[sweeplab] agents connected: "
# One trial at a time: the status changes while the agent trains.
ONE_BY_ONE = ("tuner.pack=1", "trainer.epochs=3", "trainer.batch_size=16", "trainer.steps_per_execution=1")


@pytest.mark.slow
def test_a_chief_waiting_for_an_agent_shows_its_status_and_the_agent_its_trials(tmp_path, processes):
    chief = start_chief(tmp_path, processes, *ONE_BY_ONE)
    agent = start_agent(printed_agent_command(chief), tmp_path, processes, "agent0")
    assert chief.wait() == 0, chief.output()[-3000:]
    assert agent.wait(60) == 0, agent.output()[-3000:]
    printed = chief.output()
    assert printed.count("agents join from any machine with:") == 1
    lines = [line for line in printed.splitlines() if line.startswith(STATUS)]
    assert (
        lines[0] == f"{STATUS}0; trials: 0 running, 0 finished, 0 failed (of 4); waiting for agents (the command above)"
    )
    assert lines[-1] == f"{STATUS}1; trials: 0 running, 4 finished, 0 failed (of 4)"
    assert all(line != after for line, after in zip(lines, lines[1:])), lines  # each a change
    finished = [int(re.search(r"(\d+) finished", line).group(1)) for line in lines]
    assert finished == sorted(finished), lines

    said = agent.output()
    tuner_id = re.search(r"\[sweeplab\] this agent asks for trials as (agent-[0-9a-f]{6})\n", said).group(1)
    assert f"[sweeplab] {tuner_id} stops: trained 4 trials; the search is done\n" in said


# --- multiruns: each job's lines carry its name ---------------------------------------------------


def sweeplab_multirun(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    uri = sqlite_uri(tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "sweeplab", "-m", "tuner=random,grid", f"tracking.uri={uri}", *overrides]
        + [f"state_dir={tmp_path / 'state'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_multiruns_error_line_carries_its_jobs_name(tmp_path):
    result = sweeplab_multirun(tmp_path, "tuner.max_trials=0")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("[mlp/random] sweeplab: config error at 'tuner.max_trials'"), result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher", [(), ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")], ids=["basic", "joblib"]
)
def test_each_line_of_a_multiruns_job_starts_with_its_name_and_the_end_with_none(tmp_path, launcher):
    result = sweeplab_multirun(tmp_path, "tuner.max_trials=1", "trainer.epochs=1", "ensemble=none", *launcher)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    lines = result.stdout.splitlines()
    end = lines.index(ALL_SEARCHES)
    assert lines[end - 1] == ""
    names = ("[mlp/random]", "[mlp/grid]")
    job_output = [line for line in lines[: end - 1] if not HYDRA_LOG.match(line)]
    unnamed = [line for line in job_output + result.stderr.splitlines() if not line.startswith(names)]
    assert unnamed == [], (unnamed, result.stdout[-2000:], result.stderr[-2000:])
    for name in names:  # each job's own lines: its search, its trial table, its leaderboard
        tuner = name.strip("[]").split("/")[1]
        assert any(line.startswith(f"{name} [sweeplab] starting search mlp-{tuner}-") for line in job_output)
        assert any(line.startswith(f"{name} Leaderboard (by val_accuracy; 1 of 1") for line in job_output)
    assert not [line for line in lines[end:] if line.startswith(names)]
    assert lines[end + 1] == "Leaderboard (by val_accuracy; 2 of 2 finished trials)"


# --- the browse hint ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.processes  # through conftest's `serving`, which the marking hook does not see into
def test_the_browse_hint_says_open_when_a_ui_answers_and_how_to_start_one_when_none_does(tmp_path):
    uri = sqlite_uri(tmp_path)
    port = free_port()
    local_ui = f"http://127.0.0.1:{port}"
    address = f"{local_ui}/#/experiments/1/runs?workflowType=machine_learning"
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", port, "--workers", 1]
    with serving(command, port, tmp_path / "mlflow-ui.log"):
        assert ui.browse_hint(uri, "1", default_uri=uri, local_ui=local_ui) == f"\nBrowse the runs: open {address}"
    started = time.monotonic()
    hint = ui.browse_hint(uri, "1", default_uri=uri, local_ui=local_ui)  # stopped: nothing listens there
    assert hint == f"\nBrowse the runs: {address}\n  start the UI first: sweeplab ui (or make ui)"
    assert time.monotonic() - started < 1


def test_the_browse_hint_never_waits_long_on_something_that_does_not_answer():
    with socket.socket() as silent:  # accepts connections (the system does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        local_ui = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        hint = ui.browse_hint("sqlite:////elsewhere/mlflow.db", "2", local_ui=local_ui)
        assert time.monotonic() - started < 1.5
    assert hint.endswith(
        "start the UI first: sweeplab ui --tracking-uri 'sqlite:////elsewhere/mlflow.db' "
        "(or MLFLOW_TRACKING_URI='sqlite:////elsewhere/mlflow.db' make ui)"
    )
    assert ui.browse_hint("https://mlflow.example.org/", "2").startswith("\nBrowse the runs: open https://")
