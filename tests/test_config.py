"""Every config composes and validates; bad input fails early with a clear message."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeplab.app import run
from sweeplab.errors import ConfigError
from sweeplab.config.validation import validate

from conftest import CONF_DIR, ROOT


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


GROUP_OPTIONS = [
    (group, option)
    for group in sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())
    for option in _options(group)
]


def test_every_group_has_options():
    groups = {g for g, _ in GROUP_OPTIONS}
    assert {"data", "model", "tuner", "trainer", "tracking", "sweep"} <= groups


@pytest.mark.parametrize("group, option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_config_in_every_group_composes_and_validates(make_config, group, option):
    cfg = make_config([f"{group}={option}"])
    app_cfg = validate(cfg)
    if group in ("model", "data"):
        assert getattr(app_cfg, group) is not None


BAD_INPUTS = [
    (["+trainer.epoch=3"], "trainer.epoch", "epochs"),
    (["trainer.epochs=abc"], "trainer.epochs", "an integer"),
    (["trainer.epochs=0"], "trainer.epochs", ">= 1"),
    (["tuner.direction=up"], "tuner.direction", "'max', 'min'"),
    (["tuner.workers=0"], "tuner.workers", ">= 1"),
    (["model.space.activation.values=[relux]"], "model.space.activation", "'tanh'"),
    (["model.space.initializer.values=[glorot]"], "model.space.initializer", "'he_normal'"),
    (["model.space.units.min=500"], "model.space.units.min", "<= max"),
    (["trainer.optimizer=adamm"], "trainer.optimizer", "'adam'"),
    (["tuner.objective=val_acc"], "tuner.objective", "val_accuracy"),
    (["+model.hidden=3"], "model.hidden", "space"),
    (["data.val_fraction=0.7", "data.test_fraction=0.5"], "data.val_fraction", "< 1"),
    (["tracking.log_models=false"], "tracking.log_models", "ensemble=none"),
]


@pytest.mark.parametrize("overrides, key, expected", BAD_INPUTS, ids=[o[0] for o, _, _ in BAD_INPUTS])
def test_bad_input_names_the_key_and_creates_no_run(make_config, store, overrides, key, expected):
    cfg = make_config([*store["overrides"], *overrides])
    with pytest.raises(ConfigError) as info:
        run(cfg)
    message = str(info.value)
    assert info.value.key == key
    assert expected in message
    # Nothing was recorded: no store, no tuner state.
    assert not (Path.cwd() / "mlruns").exists()
    assert not (Path.cwd() / "state").exists()


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "sweeplab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_reports_a_bad_value_without_a_traceback(tmp_path):
    result = _cli("model.space.activation.values=[relu,relux]", "hydra.run.dir=.", cwd=tmp_path)
    assert result.returncode == 2
    assert "model.space.activation" in result.stderr and "'relux'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns").exists()
    # Validation runs before TensorFlow is imported: no TF log lines.
    assert "tensorflow" not in result.stderr.lower()


def test_cli_reports_an_unknown_group_option(tmp_path):
    result = _cli("model=mlpp", cwd=tmp_path)
    assert result.returncode != 0
    assert "model/mlpp" in result.stderr and "mlp" in result.stderr
    assert not (tmp_path / "mlruns").exists()


def test_help_names_the_app_and_shows_groups_and_examples(tmp_path):
    result = _cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("sweeplab:") and "__main__" not in result.stdout
    assert "model: inception, mlp, mlp_variant, multi_output, residual" in result.stdout
    assert "python -m sweeplab.ensemble --experiment NAME" in result.stdout
    assert "python -m sweeplab.report --experiment NAME" in result.stdout


def test_sweeplab_command_lists_its_subcommands_and_runs_them(tmp_path):
    sweeplab = Path(sys.executable).with_name("sweeplab")
    listed = subprocess.run([str(sweeplab), "--help"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    for command in ("search", "ensemble", "report"):
        assert f"  {command} " in listed.stdout
    # Each subcommand is its `python -m` command: same help, same errors.
    search = subprocess.run([str(sweeplab), "search", "--help"], capture_output=True, text=True, timeout=60)
    assert search.stdout == _cli("--help", cwd=tmp_path).stdout
    report = subprocess.run([str(sweeplab), "report", "--help"], capture_output=True, text=True, timeout=60)
    assert "--experiment" in report.stdout and "--no-log" in report.stdout
    bad = subprocess.run([str(sweeplab), "serch"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown command 'serch'" in bad.stderr
