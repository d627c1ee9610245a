"""Installable anywhere: a wheel of the checkout, installed into a fresh virtualenv outside it,
runs `sweeplab --help`, a named sweep's config and a one-trial search from another folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from processes import ROOT, env

PACKAGE_CONF = ROOT / "src" / "sweeplab" / "conf"


def run(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """A command of the new environment, which sees neither the checkout's src/ nor its editable install."""
    outside = {k: v for k, v in env().items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=outside, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def build_wheel(folder: Path) -> Path:
    """A wheel of a copy of the checkout's package sources (as a fresh clone has them: no egg-info)."""
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        folder / "dist",
        source,
        cwd=folder,
    )
    (wheel,) = (folder / "dist").glob("sweeplab-*.whl")
    return wheel


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A virtualenv with the wheel installed; the dependencies are .venv's, through a path line of a
    .pth file (only appended to sys.path: the .pth files there, the editable sweeplab's, are not read)."""
    venv = folder / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=folder)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel, cwd=folder)
    site = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=folder).stdout.strip()
    )
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(dependencies)))
    return venv


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_runs_a_search(tmp_path):
    from mlflow import MlflowClient

    wheel = build_wheel(tmp_path)
    packed = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"sweeplab/conf/{p.relative_to(PACKAGE_CONF)}" for p in PACKAGE_CONF.rglob("*.yaml")}
    assert "sweeplab/conf/config.yaml" in shipped and "sweeplab/conf/sweep/default.yaml" in shipped
    assert shipped <= packed, f"missing from the wheel: {sorted(shipped - packed)}"

    venv = fresh_venv(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    imported = run(venv / "bin" / "python", "-c", "import sweeplab; print(sweeplab.__file__)", cwd=elsewhere)
    assert Path(imported.stdout.strip()).is_relative_to(venv), imported.stdout

    sweeplab = venv / "bin" / "sweeplab"
    listed = run(sweeplab, "--help", cwd=elsewhere).stdout
    for command in ("search", "agent", "server", "ui", "tensorboard", "report", "ensemble"):
        assert f"\n  {command} " in listed, listed
    # Named sweeps come with the package.
    assert (
        "experiment: sweeplab-residual"
        in run(sweeplab, "search", "sweep=residual", "--cfg", "job", cwd=elsewhere).stdout
    )

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    run(
        sweeplab,
        "search",
        "tuner.max_trials=1",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "ensemble=none",
        "tracking.experiment=installed",
        f"tracking.uri={uri}",
        f"state_dir={tmp_path / 'state'}",
        cwd=elsewhere,
    )
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("installed")
    trials = client.search_runs([experiment.experiment_id], "tags.`sweeplab.role` = 'trial'")
    assert [t.info.status for t in trials] == ["FINISHED"]
    assert not (elsewhere / "mlruns").exists()  # the search used the store it was given
