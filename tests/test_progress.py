"""What a search shows while it runs: one table per pack, one compact line per epoch and per trial,
the search's progress as plain lines off a terminal and as a bar within the terminal's width on one,
trials numbered by their Keras Tuner id (as their runs are), and no Keras Tuner banner."""

from __future__ import annotations

import os
import pty
import re
import sys
import tempfile
import threading

import keras_tuner as kt
import pytest
from conftest import TINY
from mlflow import MlflowClient
from stores import sqlite_uri

from sweeplab.app import run
from sweeplab.search import progress
from sweeplab.search.tuning import planned_trials

KERAS_TUNER_DISPLAY = ("Search: Running Trial", "Best val_accuracy So Far", "Total elapsed time", "Complete [")


def search_output(tmp_path, make_config, capsys, *overrides: str):
    """(result, {run name: trial id}, {trial id: its score}, the lines printed) of a tiny search."""
    uri = sqlite_uri(tmp_path)
    cfg = make_config([*TINY, f"tracking.uri={uri}", f"state_dir={tmp_path / 'state'}", "ensemble=none", *overrides])
    capsys.readouterr()
    result = run(cfg)
    lines = capsys.readouterr().out.splitlines()
    query = "tags.`sweeplab.role` = 'trial' and attributes.status = 'FINISHED'"
    runs = MlflowClient(uri).search_runs([result.experiment_id], query)
    scores = {r.data.tags["sweeplab.trial_id"]: r.data.metrics["scored_val_accuracy"] for r in runs}
    return result, {r.info.run_name: r.data.tags["sweeplab.trial_id"] for r in runs}, scores, lines


def matching(lines: list[str], pattern: str) -> list[re.Match]:
    return [m for m in map(re.compile(pattern).match, lines) if m]


def test_a_pack_of_eight_shows_one_table_a_line_per_epoch_and_per_trial(tmp_path, make_config, capsys):
    result, trial_ids, scores, lines = search_output(
        tmp_path, make_config, capsys, "tuner.pack=8", "tuner.max_trials=8", "trainer.epochs=2", "trainer.verbose=2"
    )
    assert result.finished == 8 and sorted(trial_ids) == [f"trial-{i}" for i in sorted(trial_ids.values())]
    # The search's own lines (the leaderboard and the browse hint after it quote the store's path).
    searching = lines[: next(i for i, line in enumerate(lines) if line.startswith("Leaderboard"))]
    too_long = [line for line in searching if len(line) > progress.PLAIN_WIDTH]
    assert not too_long, too_long
    assert not [line for line in lines if any(banner in line for banner in KERAS_TUNER_DISPLAY)]
    assert not [line for line in lines if "b0_" in line]  # Keras' own line of every branch's metrics

    (pack,) = matching(lines, r"\[sweeplab\] pack 1: 8 trials \(([^)]*)\), up to 2 epochs$")
    assert pack.group(1).split(", ") == sorted(trial_ids.values())
    headers = [i for i, line in enumerate(lines) if line.startswith("  trial  ")]
    assert len(headers) == 1 and "learning_rate" in lines[headers[0]]
    rows = [line.split()[0] for line in lines[headers[0] + 1 : headers[0] + 9]]
    assert rows == sorted(trial_ids.values())

    epochs = matching(lines, r"\[sweeplab\] pack 1 epoch (\d)/2: 8 training, best val_accuracy \S+ \(trial (\S+)\)")
    assert [m.group(1) for m in epochs] == ["1", "2"]
    results = matching(lines, r"\[sweeplab\] trial (\S+): val_accuracy \S+ at epoch \d; 2/2 epochs trained$")
    assert sorted(m.group(1) for m in results) == sorted(trial_ids.values())

    searches = matching(
        lines, r"\[sweeplab\] search: (\d+)/(\d+) trials finished, (\d+) failed, best .*\(trial (\S+)\)"
    )
    assert len(searches) == 1  # one line for the pack, once all its trials ended
    assert searches[-1].groups()[:3] == ("8", "8", "0")
    best = max(scores.values())
    # The search's best, and the pack's after its last epoch, is a trial of the best score (ties are possible).
    assert scores[searches[-1].group(4)] == best and scores[epochs[-1].group(2)] == best


def test_an_unpacked_trial_shows_its_epochs_table_and_result_as_a_pack_does(tmp_path, make_config, capsys):
    result, trial_ids, scores, lines = search_output(tmp_path, make_config, capsys, "tuner.pack=1", "trainer.verbose=2")
    assert result.finished == 2
    # Keras Tuner's search sets its display's verbosity to fit's: it must stay silent all the same.
    assert not [line for line in lines if any(banner in line for banner in KERAS_TUNER_DISPLAY)]
    assert not [line for line in lines if line.startswith("Epoch ")]  # not Keras' own lines
    epochs = matching(lines, r"\[sweeplab\] trial (\S+) epoch (\d)/2: best val_accuracy \S+, \S+ s/epoch$")
    assert [m.groups() for m in epochs] == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]
    assert [m.group(1) for m in matching(lines, r"\[sweeplab\] trial (\S+): up to 2 epochs$")] == ["0", "1"]
    assert len([line for line in lines if line.startswith("  trial  ")]) == 2
    results = matching(lines, r"\[sweeplab\] trial (\S+): val_accuracy \S+ at epoch \d; 2/2 epochs trained$")
    assert [m.group(1) for m in results] == sorted(trial_ids.values()) == ["0", "1"]
    searches = matching(lines, r"\[sweeplab\] search: (\d)/2 trials finished, 0 failed")
    assert [m.group(1) for m in searches] == ["1", "2"]
    assert "left" in searches[0].string and "left" not in searches[1].string


def test_verbose_0_shows_no_table_and_no_epoch(tmp_path, make_config, capsys):
    result, trial_ids, scores, lines = search_output(tmp_path, make_config, capsys, "tuner.pack=2", "trainer.verbose=0")
    assert result.finished == 2
    assert not [line for line in lines if re.search(r"\bepoch \d+/|^Epoch |^  trial  ", line)]
    results = matching(lines, r"\[sweeplab\] trial (\S+): val_accuracy ")
    assert sorted(m.group(1) for m in results) == sorted(trial_ids.values())
    assert matching(lines, r"\[sweeplab\] search: 2/2 trials finished, 0 failed")


@pytest.mark.parametrize("pack", [1, 2])
def test_verbose_1_off_a_terminal_shows_tables_and_results_but_no_epochs(tmp_path, make_config, capsys, pack):
    """Bars where a terminal draws them, none in a log: a few lines per pack or trial."""
    result, trial_ids, scores, lines = search_output(
        tmp_path, make_config, capsys, f"tuner.pack={pack}", "trainer.verbose=1"
    )
    assert result.finished == 2
    assert not [line for line in lines if re.search(r"\bepoch \d+/|^Epoch |━", line)]
    assert len([line for line in lines if line.startswith("  trial  ")]) == 3 - pack  # a table per pack or trial
    results = matching(lines, r"\[sweeplab\] trial (\S+): val_accuracy ")
    assert sorted(m.group(1) for m in results) == sorted(trial_ids.values())


def test_a_table_wider_than_the_width_cuts_its_headers_then_leaves_columns_out():
    values = {"learning_rate": 0.003, "initializer": "glorot_uniform", "units": 128, "tuner/epochs": 4}
    wide = progress.trial_table([("7", values)], 200)
    assert wide[0].split() == ["trial", "learning_rate", "initializer", "units"]  # tuner/... is Keras Tuner's own
    assert wide[1].split() == ["7", "0.003", "glorot_uniform", "128"]
    narrow = progress.trial_table([("7", values)], 28)
    assert all(len(line) <= 28 for line in narrow)
    assert narrow[1].split()[:2] == ["7", "0.003"] and narrow[0].split()[1] == "lear~"
    assert narrow[-1].startswith("  (+2 more")


def test_a_plain_search_line_per_trial_or_per_pack_with_the_time_left(capsys):
    shown = progress.SearchProgress("search", "val_loss", False, 4, live=False, ended=1)
    shown.consider("0", 0.5)
    shown.trial_ended("1", 0.4)
    with shown.held():
        shown.trial_ended("2", None)
        shown.trial_ended("3", 0.7)
    shown.finish(complete=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    first = r"\[sweeplab\] search: 2/4 trials finished, 0 failed, best val_loss 0\.4 \(trial 1\), \d+:\d\d"
    assert re.match(first, lines[0]), lines[0]
    assert lines[0].endswith("left")
    assert lines[1].startswith("[sweeplab] search: 4/4 trials finished, 1 failed, best val_loss 0.4 (trial 1)")
    assert "left" not in lines[1]


def test_a_search_that_ends_short_of_its_plan_says_so_once(capsys):
    shown = progress.SearchProgress("search", "val_accuracy", True, 8, live=False)
    shown.trial_ended("0", 0.9)
    shown.finish(complete=True)  # a grid with one point
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1].split(",")[0] for line in lines] == ["1/8 trials finished", "1/1 trials finished"]


@pytest.mark.parametrize("max_epochs, factor, iterations", [(4, 2, 1), (9, 3, 2)])
def test_a_hyperband_search_plans_as_many_trials_as_its_oracle_hands_out(max_epochs, factor, iterations):
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("score", "max"),
        max_epochs=max_epochs,
        factor=factor,
        hyperband_iterations=iterations,
        hyperparameters=hp,
        seed=1,
    )
    oracle._set_project_dir(tempfile.mkdtemp(), "hyperband")
    oracle.verbose = 0
    handed_out = 0
    while (trial := oracle.create_trial("tuner0")).status != "STOPPED":
        handed_out += 1
        oracle.update_trial(trial.trial_id, {"score": trial.hyperparameters.values["x"]})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert planned_trials(oracle) == handed_out > 0


def drained(leader: int, into: list[bytes]) -> threading.Thread:
    """Reads a pseudo-terminal as it is written (a full one would block its writer) until it closes."""

    def read():
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed
                return
            if not chunk:
                return
            into.append(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_on_a_terminal_the_bars_fit_its_width(monkeypatch):
    """A live bar (rich) on a real pseudo-terminal of 60 columns: every line drawn fits."""
    leader, follower = pty.openpty()
    chunks: list[bytes] = []
    reader = drained(leader, chunks)
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setattr(sys, "stdout", open(follower, "w", buffering=1))  # noqa: SIM115 (closed below)
    try:
        assert progress.on_terminal() and progress.width() == 60
        progress.say("a line longer than the terminal, before the bar " * 4)  # a local worker's, say
        shown = progress.SearchProgress("search", "val_accuracy", True, 8, live=True)
        shown.start()
        epochs = progress.PackEpochs(shown, "pack 1", 12, verbose=1)
        epochs.epoch_ended(3, 8, ("val_accuracy", 0.91234, "07"), 0.8)
        progress.say("a line longer than the terminal, under the bar " * 4)
        epochs.close()
        for trial_id in range(8):
            shown.trial_ended(f"0{trial_id}", 0.5 + trial_id / 100)
        shown.finish(complete=True)
    finally:
        sys.stdout.close()
    reader.join(10)
    os.close(leader)
    drawn = b"".join(chunks).decode()
    visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    lines = [part for line in visible.split("\n") for part in line.split("\r")]
    assert "epoch 3/12" in visible
    # Cut at the end of the status, not in the label, the bar or the clock.
    last = [line for line in lines if line.strip()][-1]
    assert re.match(r"search ━+ +0:00:\d\d 8/8 trials fin", last), last
    assert max(len(line.rstrip()) for line in lines) <= 60, max(lines, key=len)


def test_a_search_on_an_80_column_terminal_prints_no_wider_line(tmp_path):
    """A real search (a pack, its ensemble, the browse hint) in a pseudo-terminal of 80 columns: every
    line drawn fits, but for one word too long to break (an address)."""
    import subprocess

    from processes import env

    leader, follower = pty.openpty()
    chunks: list[bytes] = []
    reader = drained(leader, chunks)
    uri = sqlite_uri(tmp_path / "mlruns")
    args = [*TINY, "tuner.max_trials=4", "tuner.pack=4", f"tracking.uri={uri}", f"state_dir={tmp_path / 'state'}"]
    search = subprocess.run(
        [sys.executable, "-m", "sweeplab", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**env(), "COLUMNS": "80"},
        timeout=600,
    )
    os.close(follower)
    reader.join(10)
    os.close(leader)
    visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    lines = [part.rstrip() for line in visible.splitlines() for part in line.split("\r")]
    assert search.returncode == 0, visible[-3000:]
    assert any(line.startswith("Ensemble (MLflow run") for line in lines) and "Browse the runs:" in visible
    wide = [line for line in lines if len(line) > 80 and len(line.split()) > 1]
    assert not wide, wide
