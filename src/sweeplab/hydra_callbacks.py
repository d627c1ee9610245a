"""Hydra callbacks that run in the launching process."""

from __future__ import annotations

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class PrepareTrackingStore(Callback):
    """Create the MLflow store and experiment once, before multirun jobs start.

    Parallel jobs that each create a fresh SQLite store race on its schema
    migration ("database is locked"); after this, they only open it.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from sweeplab.schema import TrackingConfig, _typed
        from sweeplab.tracking import connect

        tracking = _typed(TrackingConfig, dict(config.tracking), "tracking")
        connect(tracking)
