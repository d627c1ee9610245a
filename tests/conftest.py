"""Shared fixtures: compose real Hydra configs, shrink them, track into tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Small enough to run in seconds, big enough to train something real.
TINY = [
    "tuner.max_trials=2",
    "trainer.epochs=2",
    "trainer.verbose=0",
]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store and tuner state dir under tmp_path; cwd moved there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    return {"uri": uri, "overrides": [f"tracking.uri={uri}", f"state_dir={tmp_path / 'state'}"]}


@pytest.fixture
def make_config():
    """compose(overrides) -> a real composed config from conf/."""

    def _compose(overrides=(), config_name="config"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(autouse=True)
def _seed():
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
