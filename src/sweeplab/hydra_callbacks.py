"""Hydra callbacks that run in the launching process."""

from __future__ import annotations

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sweeplab.errors import command_boundary


class PrepareTrackingStore(Callback):
    """Create the MLflow store and experiment once, before multirun jobs start;
    when they are done, print the leaderboard across jobs and build one ensemble.

    Parallel jobs that each create a fresh SQLite store race on its schema
    migration ("database is locked"); after this, they only open it.
    """

    @command_boundary(exits=True)
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from sweeplab.config.schema import TrackingConfig
        from sweeplab.config.validation import typed
        from sweeplab.tracking.store import connect

        tracking = typed(TrackingConfig, dict(config.tracking), "tracking")
        connect(tracking)

    @command_boundary(exits=True)
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from omegaconf import OmegaConf

        from sweeplab.app import finish_experiment
        from sweeplab.config.validation import validate

        cfg = validate(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]))
        finish_experiment(cfg)
