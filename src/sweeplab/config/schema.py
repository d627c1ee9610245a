"""Structured-config schemas: one dataclass per config group (the model
group's schema is its family's `Config`), and `AppConfig`, the validated
whole. `validation.py` checks a composed config against them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from sweeplab.space.hyperparameters import Space


class TunerKind(str, enum.Enum):
    random = "random"
    bayesian = "bayesian"
    hyperband = "hyperband"
    grid = "grid"


class Direction(str, enum.Enum):
    max = "max"
    min = "min"


@dataclass
class DataConfig:
    name: str = "digits"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    standardize: bool = True
    # npz / csv / mnist: the file to load.
    path: Optional[str] = None
    # npz / csv: input name -> column list (csv) or array key (npz).
    inputs: Optional[Dict[str, Any]] = None
    # npz / csv: target column or array key -> task (classification or regression).
    targets: Optional[Dict[str, str]] = None
    # mnist: fetch with Keras' loader when `path` is absent (needs network).
    download: bool = False


# The shared secret of an oracle listening off loopback (workers and agents send it).
ORACLE_TOKEN_ENV = "SWEEPLAB_ORACLE_TOKEN"
# The oracle's TLS certificate for workers and agents (a file), when not taken from the search run.
ORACLE_CERT_ENV = "SWEEPLAB_ORACLE_CERT"
# The SHA-256 an agent requires of the oracle's certificate (the search prints it in the agent command).
ORACLE_CERT_SHA256_ENV = "SWEEPLAB_ORACLE_CERT_SHA256"


@dataclass
class OracleConfig:
    """Where a search's oracle listens for its workers and agents (tuner.workers != 1)."""

    host: str = "127.0.0.1"
    # 0: any free port (recorded on the search run, where agents find it).
    port: int = 0
    # A worker or agent not heard from this long has lost its trial; it goes to another.
    lease_s: float = 30.0
    # How long a worker or agent waits for the oracle to answer before it stops (< lease_s).
    wait_s: float = 10.0
    # TLS (both or neither): the oracle's PEM certificate, which must name the address agents
    # connect to (subjectAltName), and its private key. Without them calls go in clear.
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None


@dataclass
class TunerConfig:
    """One schema for every kind, so that one override works across a multirun
    over tuners (e.g. `-m tuner=random,hyperband ++tuner.max_epochs=3`)."""

    kind: TunerKind = TunerKind.random
    max_trials: Optional[int] = 10
    objective: str = "val_accuracy"
    direction: Direction = Direction.max
    seed: Optional[int] = 1
    executions_per_trial: int = 1
    max_consecutive_failed_trials: int = 3
    overwrite: bool = False
    # Processes that train trials at once on this machine (Keras Tuner's distributed
    # mode); 0: none, the search only serves its oracle to agents.
    workers: int = 1
    oracle: OracleConfig = field(default_factory=OracleConfig)
    # Trials trained together as branches of one graph (an integer, or auto: 8 for dense
    # families, one at a time where trials cannot share a graph cheaply).
    pack: Any = "auto"
    # Hyperband only.
    max_epochs: int = 9
    factor: int = 3
    hyperband_iterations: int = 1
    # Bayesian only.
    num_initial_points: Optional[int] = None
    alpha: float = 1e-4
    beta: float = 2.6


@dataclass
class EarlyStoppingConfig:
    enabled: bool = True
    monitor: str = "val_loss"
    patience: int = 3
    min_delta: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    loss: Optional[str] = None
    verbose: int = 2
    steps_per_execution: int = 32
    tf_data: bool = True
    best_weights: str = "memory"
    # One TensorBoard log directory per trial, also logged as the trial run's artifacts.
    tensorboard: bool = False
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class TrackingConfig:
    uri: Optional[str] = None
    experiment: str = "sweeplab"
    artifact_location: Optional[str] = None
    log_models: bool = True


class EnsembleMethod(str, enum.Enum):
    greedy = "greedy"
    optimize = "optimize"


@dataclass
class EnsembleConfig:
    enabled: bool = True
    top_k: int = 5
    method: EnsembleMethod = EnsembleMethod.greedy
    max_steps: int = 20
    registered_model: Optional[str] = None


@dataclass
class RootConfig:
    seed: int = 42
    state_dir: str = ".sweeplab/tuner"
    leaderboard_rows: int = 10
    # A trial param (e.g. variant): print and log one table and figure comparing every trial by it.
    compare_by: Optional[str] = None


GROUPS = ("data", "model", "tuner", "trainer", "tracking", "ensemble")


@dataclass
class AppConfig:
    """A validated config: typed groups plus the parsed search space."""

    data: DataConfig
    model: Any
    tuner: TunerConfig
    trainer: TrainerConfig
    tracking: TrackingConfig
    ensemble: EnsembleConfig
    seed: int
    state_dir: str
    leaderboard_rows: int
    compare_by: Optional[str]
    space: Space
    resolved: dict  # the whole config as plain data, for logging

    @property
    def family(self) -> str:
        return self.model.family
