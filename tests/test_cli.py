"""The `sweeplab` command: every subcommand listed and answering --help, the `python -m`
spellings running the same code, and one error boundary: a mistake is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, serving
from processes import Process, env, until
from stores import sqlite_uri

from sweeplab import __version__
from sweeplab.errors import ConfigError, TrackingError, command_boundary

SWEEPLAB = Path(sys.executable).with_name("sweeplab")
COMMANDS = ("search", "agent", "server", "ui", "tensorboard", "report", "ensemble")


def sweeplab(*args: str, cwd: Path, module: bool = False, extra_env: dict | None = None):
    """`sweeplab ARGS` (or `python -m sweeplab ARGS`) in its own process, from `cwd`."""
    command = [sys.executable, "-m", "sweeplab"] if module else [str(SWEEPLAB)]
    return subprocess.run(
        [*command, *args], cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(result, *expected: str) -> None:
    """Exit 2 and one line on stderr, `sweeplab: ...`, naming what is wrong; no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sweeplab: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An MLflow store with one experiment and no runs: what a mistyped name or run id meets."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("store")
    uri = sqlite_uri(folder)
    MlflowClient(tracking_uri=uri).create_experiment("known")
    return uri


def test_help_lists_every_command_with_one_line_each(tmp_path):
    result = sweeplab("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and line.split()]
    assert listed == list(COMMANDS)
    assert sweeplab("--version", cwd=tmp_path).stdout == f"sweeplab {__version__}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_answers_help(command, tmp_path):
    result = sweeplab(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    if command == "search":  # Hydra's own help: groups, keys, examples
        assert result.stdout.startswith("sweeplab:") and "model: inception, mlp" in result.stdout
    else:
        assert result.stdout.startswith(f"usage: sweeplab {command} "), result.stdout
    assert not list(tmp_path.iterdir()), "--help created files"


def test_an_unknown_command_exits_2_naming_it(tmp_path):
    assert_one_line_error(sweeplab("serch", "model=mlp", cwd=tmp_path), "unknown command 'serch'", "search")


def test_python_m_sweeplab_runs_a_command_named_first_and_a_search_otherwise(tmp_path):
    agent = sweeplab("agent", "--help", cwd=tmp_path, module=True)
    assert agent.returncode == 0 and agent.stdout.startswith("usage: sweeplab agent "), agent.stderr
    search = sweeplab("--cfg", "job", "tuner.max_trials=3", cwd=tmp_path, module=True)
    assert search.returncode == 0, search.stderr
    assert "max_trials: 3" in search.stdout


def test_a_bad_config_value_is_one_line_before_anything_runs(tmp_path):
    for module in (False, True):
        result = sweeplab("search", "tuner.max_trials=0", "hydra.run.dir=.", cwd=tmp_path, module=module)
        assert_one_line_error(result, "tuner.max_trials")
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / ".sweeplab").exists()


@pytest.mark.parametrize(
    "command, args, expected",
    [
        ("report", ["--experiment", "unknown"], "experiment: got 'unknown'"),
        ("ensemble", ["--experiment", "unknown"], "experiment: got 'unknown'"),
        ("agent", ["0123456789abcdef"], "run '0123456789abcdef': no such run"),
    ],
)
def test_a_wrong_experiment_or_run_id_is_one_line(command, args, expected, empty_store, tmp_path):
    result = sweeplab(
        command,
        *args,
        "--tracking-uri",
        empty_store,
        cwd=tmp_path,
        extra_env={"SWEEPLAB_ORACLE_TOKEN": "not-needed-to-fail"},
    )
    assert_one_line_error(result, expected)


def test_an_agent_without_a_token_is_told_which_variable_to_set(tmp_path):
    assert_one_line_error(sweeplab("agent", "0123456789abcdef", cwd=tmp_path), "SWEEPLAB_ORACLE_TOKEN")


def test_the_boundary_returns_2_or_130_and_prints_one_line(capsys):
    @command_boundary(interrupted="stopped; run it again")
    def command(error: BaseException | None) -> int:
        if error:
            raise error
        return 0

    assert command(None) == 0
    assert command(ConfigError("tuner.kind", "grd", "one of [grid, random]")) == 2
    assert (
        capsys.readouterr().err == "sweeplab: config error at 'tuner.kind': got 'grd'; expected one of [grid, random]\n"
    )
    assert command(TrackingError("cannot reach postgresql://me:secret@db/x")) == 2
    assert capsys.readouterr().err == "sweeplab: cannot reach postgresql://me:***@db/x\n"
    assert command(KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "sweeplab: stopped; run it again\n"
    with pytest.raises(ValueError):  # a bug keeps its traceback
        command(ValueError("bug"))


def test_the_boundary_of_a_hydra_task_ends_the_process(capsys):
    @command_boundary(exits=True)
    def task() -> float:
        raise ConfigError("tuner.max_trials", 0, "an integer >= 1")

    with pytest.raises(SystemExit) as ended:
        task()
    assert ended.value.code == 2 and capsys.readouterr().err.startswith("sweeplab: config error at 'tuner.max_trials'")


@pytest.mark.slow
@pytest.mark.processes  # through conftest's `serving`, which the marking hook does not see into
def test_ui_serves_the_store_it_is_given(empty_store, tmp_path):
    port = free_port()
    with serving(["sweeplab", "ui", "--tracking-uri", empty_store, "--port", port], port, tmp_path / "ui.log"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
            data=b'{"max_results": 10}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert b'"name": "known"' in response.read().replace(b'":"', b'": "')
    printed = (tmp_path / "ui.log").read_text()
    assert f"MLflow store: {empty_store}, UI at http://127.0.0.1:{port}" in printed
    assert "known: http://127.0.0.1:" in printed


@pytest.mark.slow
def test_tensorboard_serves_the_trial_logs_folder(tmp_path, processes):
    port, logs = free_port(), tmp_path / "tuner"
    board = Process(
        [str(SWEEPLAB), "tensorboard", "--logdir", str(logs), "--port", str(port)],
        tmp_path,
        tmp_path / "tensorboard.log",
    )
    processes.append(board)

    def answers():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/logdir", timeout=2) as response:
            return response.read()

    assert str(logs).encode() in until(answers, 120, "TensorBoard to answer", board)
    assert logs.is_dir()  # created for searches yet to run
