"""Validation: every group of a composed config is checked here, before any
data is loaded, any model trained or any MLflow run created.

A misspelled key, a wrong type, an unknown choice or an impossible range
raises `ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import ssl
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from sweeplab.config.schema import (
    GROUPS,
    ORACLE_TOKEN_ENV,
    AppConfig,
    DataConfig,
    EnsembleConfig,
    LauncherKind,
    OracleConfig,
    PrunerConfig,
    PrunerKind,
    RootConfig,
    TrackingConfig,
    TrainerConfig,
    TunerConfig,
    TunerKind,
)
from sweeplab.data.datasets import DATASETS, TASKS
from sweeplab.errors import ConfigError
from sweeplab.models import get_family
from sweeplab.net import is_loopback
from sweeplab.space.hyperparameters import Space, parse_space
from sweeplab.space.vocabulary import LOSSES, OPTIMIZERS


def validate(cfg: DictConfig | dict) -> AppConfig:
    """Check every group against its schema; raise ConfigError on the first problem."""
    raw = _resolve(cfg)
    _check_groups(raw)
    root = typed(RootConfig, {k: v for k, v in raw.items() if k not in GROUPS}, prefix="")
    _check_pareto(root.pareto)
    data = _data(raw["data"])
    model, space = _model(raw["model"])
    tuner = typed(TunerConfig, raw["tuner"], "tuner")
    _check_tuner(tuner, space)
    _check_constraints(tuner.constraints)
    _check_warm_start(tuner)
    pruner = _pruner(raw["pruner"], tuner)
    trainer = typed(TrainerConfig, raw["trainer"], "trainer")
    _check_trainer(trainer)
    tracking, ensemble = _tracking_and_ensemble(raw["tracking"], raw["ensemble"])
    return AppConfig(
        data=data,
        model=model,
        tuner=tuner,
        pruner=pruner,
        trainer=trainer,
        tracking=tracking,
        ensemble=ensemble,
        seed=root.seed,
        state_dir=root.state_dir,
        leaderboard_rows=root.leaderboard_rows,
        compare_by=root.compare_by,
        space=space,
        resolved=raw,
    )


def _check_groups(raw: dict) -> None:
    """Only known top-level keys, and every group a mapping."""
    known = set(GROUPS) | {f.name for f in dataclasses.fields(RootConfig)}
    unknown = set(raw) - known
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(key, raw[key], f"one of the top-level keys {sorted(known)}")
    for group in GROUPS:
        if not isinstance(raw.get(group), dict):
            raise ConfigError(group, raw.get(group), f"a '{group}' config group (e.g. {group}=<option>)")


def _data(raw: dict) -> DataConfig:
    data = typed(DataConfig, raw, "data")
    if data.name not in DATASETS:
        raise ConfigError("data.name", data.name, f"one of {list(DATASETS)}")
    for key in ("val_fraction", "test_fraction"):
        value = getattr(data, key)
        if not 0 < value < 1:
            raise ConfigError(f"data.{key}", value, "a fraction between 0 and 1 (exclusive)")
    for target, task in (data.targets or {}).items():
        if task not in TASKS:
            raise ConfigError(f"data.targets.{target}", task, f"one of {list(TASKS)}")
    if data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(
            "data.val_fraction",
            data.val_fraction,
            "val_fraction + test_fraction < 1 (some data must remain for training)",
        )
    return data


def _model(raw: dict) -> tuple[Any, Space]:
    """The family's own config, checked by the family, and the search space it parses."""
    family = get_family(raw.get("family"))
    model = typed(family.Config, raw, "model")
    for key, value, expected in model.check():
        raise ConfigError(key, value, expected)
    return model, parse_space(model.space, family.HYPERPARAMETERS)


def _tracking_and_ensemble(raw_tracking: dict, raw_ensemble: dict) -> tuple[TrackingConfig, EnsembleConfig]:
    tracking = typed(TrackingConfig, raw_tracking, "tracking")
    if not tracking.experiment.strip():
        raise ConfigError("tracking.experiment", tracking.experiment, "a non-empty experiment name")
    ensemble = typed(EnsembleConfig, raw_ensemble, "ensemble")
    _positive("ensemble.top_k", ensemble.top_k)
    _positive("ensemble.max_steps", ensemble.max_steps)
    for key in ("max_params", "max_latency_ms"):
        budget = getattr(ensemble, key)
        if budget is not None and not budget > 0:
            raise ConfigError(f"ensemble.{key}", budget, "null (no budget) or a number > 0")
    if ensemble.enabled and not tracking.log_models:
        # Found now rather than after hours of training: members are logged models.
        raise ConfigError("tracking.log_models", False, "true while an ensemble is built (or ensemble=none)")
    return tracking, ensemble


def _check_tuner(tuner: TunerConfig, space: Space) -> None:
    _positive("tuner.executions_per_trial", tuner.executions_per_trial)
    _positive("tuner.max_consecutive_failed_trials", tuner.max_consecutive_failed_trials)
    if tuner.max_retries_per_trial < 0:
        raise ConfigError("tuner.max_retries_per_trial", tuner.max_retries_per_trial, "an integer >= 0")
    if tuner.workers < 0:
        raise ConfigError("tuner.workers", tuner.workers, "an integer >= 0 (0: only agents train)")
    _check_oracle(tuner.oracle)
    _check_launcher(tuner)
    if tuner.pack != "auto" and (isinstance(tuner.pack, bool) or not isinstance(tuner.pack, int) or tuner.pack < 1):
        raise ConfigError("tuner.pack", tuner.pack, "auto, or an integer >= 1 (trials trained together)")
    if tuner.kind in (TunerKind.random, TunerKind.bayesian) and tuner.max_trials is None:
        raise ConfigError("tuner.max_trials", None, f"a positive integer for the {tuner.kind.value} tuner")
    if tuner.max_trials is not None:
        _positive("tuner.max_trials", tuner.max_trials)
    if tuner.kind == TunerKind.hyperband:
        _positive("tuner.max_epochs", tuner.max_epochs)
        if tuner.factor < 2:
            raise ConfigError("tuner.factor", tuner.factor, "an integer >= 2")
        _positive("tuner.hyperband_iterations", tuner.hyperband_iterations)
    if tuner.kind == TunerKind.grid:
        space.require_grid_compatible("model.space")


def _pruner(raw: dict, tuner: TunerConfig) -> PrunerConfig:
    pruner = typed(PrunerConfig, raw, "pruner")
    if pruner.kind == PrunerKind.none:
        return pruner
    if tuner.kind == TunerKind.hyperband:
        # Hyperband stops trials itself, in brackets: a second pruner would fight it.
        raise ConfigError("pruner", pruner.kind.value, "pruner=none with the hyperband tuner (its brackets prune)")
    if tuner.executions_per_trial > 1:
        # A pruner compares epochs; several executions of a trial would report each epoch several times.
        raise ConfigError(
            "tuner.executions_per_trial", tuner.executions_per_trial, f"1 with pruner={pruner.kind.value}"
        )
    _positive("pruner.min_epochs", pruner.min_epochs)
    if pruner.warmup_trials < 0:
        raise ConfigError("pruner.warmup_trials", pruner.warmup_trials, "an integer >= 0")
    if pruner.kind == PrunerKind.asha and pruner.reduction_factor < 2:
        raise ConfigError("pruner.reduction_factor", pruner.reduction_factor, "an integer >= 2")
    return pruner


# What tuner.constraints may bound: the trial metrics of what a model costs (tracking.model_cost,
# a layer config does not import; a test checks that the two agree).
CONSTRAINED = ("params", "latency_ms")
BOUNDS = ("min", "max")


def _check_constraints(constraints: dict) -> None:
    """{metric: {min: number, max: number}}: known metrics, known bounds, numbers, min <= max."""
    example = "e.g. tuner.constraints.params.max=20000"
    for metric, bounds in constraints.items():
        key = f"tuner.constraints.{metric}"
        if metric not in CONSTRAINED:
            raise ConfigError(key, bounds, f"a bound on one of {list(CONSTRAINED)} ({metric!r} is not one)")
        if not isinstance(bounds, dict):
            raise ConfigError(key, bounds, f"a mapping with min and/or max, {example}")
        for bound, value in bounds.items():
            if bound not in BOUNDS:
                raise ConfigError(f"{key}.{bound}", value, f"one of the keys {list(BOUNDS)}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{key}.{bound}", value, "null (no bound) or a number")
        if bounds.get("min") is not None and bounds.get("max") is not None and bounds["min"] > bounds["max"]:
            raise ConfigError(f"{key}.min", bounds["min"], f"a number <= {key}.max ({bounds['max']})")


def _check_warm_start(tuner: TunerConfig) -> None:
    if tuner.warm_start_top < 0:
        raise ConfigError("tuner.warm_start_top", tuner.warm_start_top, "an integer >= 0")
    if tuner.warm_start_top and not tuner.warm_start:
        raise ConfigError("tuner.warm_start", None, "a search run id or experiment name with tuner.warm_start_top")
    if tuner.warm_start and tuner.kind == TunerKind.grid:
        # The grid visits its points in order, whatever was tried elsewhere.
        raise ConfigError(
            "tuner.warm_start", tuner.warm_start, "null with the grid tuner (random, bayesian, hyperband)"
        )


def _check_pareto(pareto: list[str] | None) -> None:
    """null, or two or more distinct `<metric>:max|min`."""
    if pareto is None:
        return
    example = "e.g. [val_accuracy:max, params:min]"
    metrics = []
    for index, entry in enumerate(pareto):
        metric, _, direction = str(entry).rpartition(":")
        if not metric or direction not in ("max", "min"):
            raise ConfigError(f"pareto.{index}", entry, f"<metric>:max or <metric>:min, {example}")
        if metric in metrics:
            raise ConfigError(f"pareto.{index}", entry, f"each metric once ({metric!r} is given twice)")
        metrics.append(metric)
    if len(metrics) < 2:
        raise ConfigError("pareto", pareto, f"null (the objective and params) or two metrics or more, {example}")


def _check_launcher(tuner: TunerConfig) -> None:
    """tuner.launcher=ray|slurm places tuner.workers agents; their sizes are checked here, not on the cluster."""
    if tuner.launcher == LauncherKind.local:
        return
    name = tuner.launcher.value
    if tuner.workers < 1:
        raise ConfigError("tuner.workers", tuner.workers, f"an integer >= 1 with tuner.launcher={name} (its agents)")
    if name == "ray":
        for key in ("num_cpus", "num_gpus"):
            if getattr(tuner.ray, key) < 0:
                raise ConfigError(f"tuner.ray.{key}", getattr(tuner.ray, key), "a number >= 0 (fractions allowed)")
        if tuner.ray.max_restarts < -1:
            raise ConfigError("tuner.ray.max_restarts", tuner.ray.max_restarts, "an integer >= 0 (-1: no limit)")
        return
    for key in ("time_min", "cpus_per_task"):
        _positive(f"tuner.slurm.{key}", getattr(tuner.slurm, key))
    if tuner.slurm.gpus_per_node < 0:
        raise ConfigError("tuner.slurm.gpus_per_node", tuner.slurm.gpus_per_node, "an integer >= 0")
    if tuner.slurm.mem_gb is not None and tuner.slurm.mem_gb <= 0:
        raise ConfigError("tuner.slurm.mem_gb", tuner.slurm.mem_gb, "null (the partition's default) or a number > 0")


def _check_oracle(oracle: OracleConfig) -> None:
    if not 0 <= oracle.port <= 65535:
        raise ConfigError("tuner.oracle.port", oracle.port, "a port number 1..65535, or 0 for any free port")
    for key in ("lease_s", "wait_s"):
        if not getattr(oracle, key) > 0:
            raise ConfigError(f"tuner.oracle.{key}", getattr(oracle, key), "a number of seconds > 0")
    if oracle.wait_s >= oracle.lease_s:
        # A call the chief answers after the lease would come from a tuner that already lost its trial.
        raise ConfigError(
            "tuner.oracle.wait_s", oracle.wait_s, f"fewer seconds than tuner.oracle.lease_s ({oracle.lease_s:g})"
        )
    _check_tls(oracle)
    if not is_loopback(oracle.host) and not os.environ.get(ORACLE_TOKEN_ENV):
        raise ConfigError(
            "tuner.oracle.host",
            oracle.host,
            f"127.0.0.1 (loopback), or a shared secret in the environment variable {ORACLE_TOKEN_ENV}: "
            "off loopback the oracle answers only calls that carry it",
        )


def _check_tls(oracle: OracleConfig) -> None:
    """Both files or neither, each a readable PEM file of its kind."""
    files = {"tls_cert": ("CERTIFICATE", "a PEM certificate"), "tls_key": ("PRIVATE KEY", "a PEM private key")}
    given = {key for key in files if getattr(oracle, key)}
    if given and len(given) < len(files):
        (missing,) = set(files) - given
        raise ConfigError(
            f"tuner.oracle.{missing}", None, f"{files[missing][1]} file too: tls_cert and tls_key are set together"
        )
    for key in sorted(given):
        path, (marker, what) = getattr(oracle, key), files[key]
        try:
            text = Path(path).read_text(encoding="ascii", errors="replace")
        except OSError as err:
            raise ConfigError(f"tuner.oracle.{key}", path, f"{what} file this user can read ({err.strerror})") from None
        if f"{marker}-----" not in text:  # -----BEGIN [RSA |EC ]PRIVATE KEY-----, -----BEGIN CERTIFICATE-----
            raise ConfigError(f"tuner.oracle.{key}", path, f"{what} file (-----BEGIN {marker}-----)")
    if given:
        _check_tls_pair(oracle.tls_cert, oracle.tls_key)


def _check_tls_pair(cert: str, key: str) -> None:
    """The key is the certificate's, unencrypted (gRPC would only fail to listen, as if the port were busy)."""
    try:
        # No password: an encrypted key fails here instead of prompting for one.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as err:
        if "KEY_VALUES_MISMATCH" in str(err):
            raise ConfigError(
                "tuner.oracle.tls_key", key, f"the private key of the certificate in tuner.oracle.tls_cert ({cert})"
            ) from None
        raise ConfigError(
            "tuner.oracle.tls_key",
            key,
            f"an unencrypted PEM private key of the certificate in tuner.oracle.tls_cert ({cert})",
        ) from None


def _check_trainer(trainer: TrainerConfig) -> None:
    _positive("trainer.epochs", trainer.epochs)
    _positive("trainer.batch_size", trainer.batch_size)
    if trainer.optimizer not in OPTIMIZERS:
        raise ConfigError("trainer.optimizer", trainer.optimizer, f"one of {list(OPTIMIZERS)}")
    if not trainer.learning_rate > 0:
        raise ConfigError("trainer.learning_rate", trainer.learning_rate, "a number > 0")
    if trainer.loss is not None and trainer.loss not in LOSSES:
        raise ConfigError("trainer.loss", trainer.loss, f"null (chosen from the task) or one of {list(LOSSES)}")
    if trainer.verbose not in (0, 1, 2):
        raise ConfigError("trainer.verbose", trainer.verbose, "0, 1 or 2")
    _positive("trainer.steps_per_execution", trainer.steps_per_execution)
    if trainer.best_weights not in ("memory", "checkpoint"):
        raise ConfigError("trainer.best_weights", trainer.best_weights, "memory or checkpoint")
    if trainer.early_stopping.patience < 0:
        raise ConfigError("trainer.early_stopping.patience", trainer.early_stopping.patience, "an integer >= 0")


def check_objective(cfg: AppConfig, metrics: list[str]) -> None:
    """The tuner's objective and the early-stopping monitor must be metrics the model reports.

    `metrics`: what the model's heads report besides `loss` (`heads.reported_metrics`):
    with several heads, `<head>_loss` and `<head>_<metric>`.
    """
    reported = ["loss", *metrics]
    allowed = reported + [f"val_{m}" for m in reported]
    if cfg.tuner.objective not in allowed:
        raise ConfigError("tuner.objective", cfg.tuner.objective, f"a metric the model reports: one of {allowed}")
    if cfg.trainer.early_stopping.enabled and cfg.trainer.early_stopping.monitor not in allowed:
        raise ConfigError(
            "trainer.early_stopping.monitor",
            cfg.trainer.early_stopping.monitor,
            f"a metric the model reports: one of {allowed}",
        )


def _positive(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(key, value, "an integer >= 1")


def _resolve(cfg) -> dict:
    if isinstance(cfg, DictConfig):
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as err:
            raise ConfigError(str(err.full_key or "?"), None, f"a value that resolves ({err.msg})") from None
    return dict(cfg)


def typed(schema: type, data: dict, prefix: str):
    """Merge `data` into `schema`'s structured config and return the dataclass."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), data)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        key = _join(prefix, err.full_key)
        allowed = [f.name for f in dataclasses.fields(schema)]
        value = _lookup(data, err.full_key)
        raise ConfigError(key, value, f"one of the keys {allowed}") from None
    except OmegaConfBaseException as err:
        key = _join(prefix, err.full_key)
        value = _lookup(data, err.full_key)
        raise ConfigError(key, value, _describe_field(schema, err.full_key)) from None


def _join(prefix: str, key) -> str:
    key = str(key or "")
    return f"{prefix}.{key}" if prefix and key else (prefix or key)


def _lookup(data: dict, dotted) -> Any:
    node: Any = data
    for part in str(dotted or "").split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _describe_field(schema: type, dotted) -> str:
    """Say in words what type a (possibly nested) dataclass field expects."""
    hint: Any = schema
    for part in str(dotted or "").split("."):
        if not dataclasses.is_dataclass(hint):
            break
        hint = typing.get_type_hints(hint).get(part, Any)
    return _describe_type(hint)


def _describe_type(hint) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        inner = [a for a in args if a is not type(None)][0]
        return f"null or {_describe_type(inner)}"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return f"one of {[m.value for m in hint]}"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint in names:
        return names[hint]
    if dataclasses.is_dataclass(hint):
        return f"a mapping with the keys {[f.name for f in dataclasses.fields(hint)]}"
    return "a mapping" if typing.get_origin(hint) is dict else "a valid value"
