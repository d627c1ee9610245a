"""Structured-config schemas: one dataclass per config group (the model
group's schema is its family's `Config`), and `AppConfig`, the validated
whole. `validation.py` checks a composed config against them.

The dataclasses are the only home of the defaults: `store.py` registers them
with Hydra's ConfigStore as each group's base, and an option file in `conf/`
holds only what differs from it. A field that only some options of a group
hold (Hyperband's budget, a data file's path) is declared with `only(...)`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from sweeplab.space.hyperparameters import Space


def only(*options: str, default: Any) -> Any:
    """A field that only the named options of its group hold: their base adds it, the others' lacks it."""
    return field(default=default, metadata={"only": options})


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
    # The data set (each option of conf/data sets its own).
    name: str = MISSING
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    # Standardize every input with mean and std computed on the train split only.
    standardize: bool = True
    # npz / csv / mnist: the file to load (mnist: Keras' mnist.npz).
    path: str | None = only("npz", "csv", "mnist", default=None)
    # npz / csv: input name -> column list (csv) or array key (npz).
    inputs: dict[str, Any] | None = only("npz", "csv", default=None)
    # npz / csv: target column or array key -> task (classification or regression).
    targets: dict[str, str] | None = only("npz", "csv", default=None)
    # mnist: fetch with Keras' loader when `path` is absent (needs network).
    download: bool = only("mnist", default=False)


# The shared secret of an oracle listening off loopback (workers and agents send it).
ORACLE_TOKEN_ENV = "SWEEPLAB_ORACLE_TOKEN"
# The name of an agent that a launcher placed (`ray:<node>:<actor>`, `slurm:<host>:<job>`): its tuner ids start with it.
AGENT_NAME_ENV = "SWEEPLAB_AGENT_NAME"
# The oracle's TLS certificate for workers and agents (a file), when not taken from the search run.
ORACLE_CERT_ENV = "SWEEPLAB_ORACLE_CERT"
# The SHA-256 an agent requires of the oracle's certificate (the search prints it in the agent command).
ORACLE_CERT_SHA256_ENV = "SWEEPLAB_ORACLE_CERT_SHA256"


@dataclass
class OracleConfig:
    """Where a search's oracle listens for its workers and agents (tuner.workers != 1)."""

    # Off loopback, set SWEEPLAB_ORACLE_TOKEN (a shared secret every call must carry).
    host: str = "127.0.0.1"
    # 0: any free port; the search run's tag sweeplab.oracle records it for agents.
    port: int = 0
    # A worker or agent not heard from this long has lost its trial; it goes to another.
    lease_s: float = 30.0
    # How long a worker or agent waits for the oracle to answer before it stops (< lease_s).
    wait_s: float = 10.0
    # TLS for every call (both or neither): the oracle's PEM certificate, which must name the
    # address agents connect to (subjectAltName), and its private key. Off loopback without
    # them the token and every trial cross the network in clear.
    tls_cert: str | None = None
    tls_key: str | None = None


class LauncherKind(str, enum.Enum):
    local = "local"
    ray = "ray"
    slurm = "slurm"


@dataclass
class RayLauncherConfig:
    """Agents as Ray actors (tuner.launcher=ray); needs `pip install -e '.[ray]'`."""

    # The cluster (ray://... or host:port); null: $RAY_ADDRESS, else a Ray started on this machine.
    address: str | None = None
    # What each agent reserves on its node (fractions allowed, e.g. 0.5 GPU).
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    # Times Ray restarts an agent that died (its node lost, killed); its trial goes to another.
    max_restarts: int = 3


class SlurmExecutor(str, enum.Enum):
    slurm = "slurm"
    # submitit's LocalExecutor: the same jobs as processes of this machine (no SLURM needed).
    local = "local"


@dataclass
class SlurmLauncherConfig:
    """Agents as a SLURM job array (tuner.launcher=slurm) through submitit; needs `pip install -e '.[slurm]'`."""

    executor: SlurmExecutor = SlurmExecutor.slurm
    # Where submitit keeps the jobs' logs (%j: the job id); null: submitit/%j in the search's tuner state.
    folder: str | None = None
    # null: the cluster's default partition.
    partition: str | None = None
    time_min: int = 60
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    # null: the partition's default memory.
    mem_gb: float | None = None


@dataclass
class TunerConfig:
    """One schema for every kind, so that one override works across a multirun
    over tuners (e.g. `-m tuner=random,hyperband ++tuner.max_epochs=3`)."""

    # The tuner (each option of conf/tuner sets its own).
    kind: TunerKind = MISSING
    # Trials to run (grid: stops after this many points; null: the whole grid).
    max_trials: int | None = 10
    objective: str = "val_accuracy"
    direction: Direction = Direction.max
    seed: int | None = 1
    executions_per_trial: int = 1
    # Keras Tuner stops after this many trials fail in a row.
    max_consecutive_failed_trials: int = 3
    # A trial that failed for a reason outside its config (its worker or agent lost, an error in
    # training such as out-of-memory) is trained again up to this many times; a NaN loss, a model
    # that cannot be built or one outside the constraints is not.
    max_retries_per_trial: int = 1
    # true: forget earlier progress of this search and start over.
    overwrite: bool = False
    # Trials trained at once, each worker its own process (on one machine; more than the
    # CPU cores only adds contention). 0: none here, the search only serves its oracle to
    # agents (python -m sweeplab.agent SEARCH_RUN_ID, on any machine).
    workers: int = 1
    # Where the oracle listens for local workers and agents (tuner.workers != 1).
    oracle: OracleConfig = field(default_factory=OracleConfig)
    # Who starts the tuner.workers agents: local (processes of this machine), ray (actors on a
    # Ray cluster, tuner.ray) or slurm (a SLURM job array, tuner.slurm).
    launcher: LauncherKind = LauncherKind.local
    ray: RayLauncherConfig = field(default_factory=RayLauncherConfig)
    slurm: SlurmLauncherConfig = field(default_factory=SlurmLauncherConfig)
    # Trials trained together as branches of one graph (horizontal fusion): an integer, or
    # auto (8 for dense families, one at a time where trials cannot share a graph cheaply).
    pack: Any = "auto"
    # Hyperband's budget is epochs, not trials: the most epochs one model trains, and the
    # reduction factor between brackets.
    max_epochs: int = only("hyperband", default=9)
    factor: int = only("hyperband", default=3)
    hyperband_iterations: int = only("hyperband", default=1)
    # Bayesian: random trials before the Gaussian process takes over (null: 3 x number of
    # hyperparameters), and the process's noise and exploration.
    num_initial_points: int | None = only("bayesian", default=None)
    alpha: float = only("bayesian", default=1e-4)
    beta: float = only("bayesian", default=2.6)
    # Bounds on what a trial's model costs (null: none), e.g. tuner.constraints.params.max=20000.
    # A model outside a bound known once built (params: trainable parameters) is not trained:
    # its run ends FINISHED, tagged sweeplab.infeasible; one known only once trained (latency_ms:
    # median batch-1 inference) tags the trained trial, which leaderboards, ensembles and the
    # registry's champion then leave out.
    constraints: dict[str, Any] = field(
        default_factory=lambda: {metric: {"min": None, "max": None} for metric in ("params", "latency_ms")}
    )
    # Earlier trials the oracle holds as completed before the first new one, not trained again: a
    # search run's id, or an experiment's name (its finished trials of the same hyperparameters).
    warm_start: str | None = None
    # Of those, the best k are trained again first (e.g. on a new data set).
    warm_start_top: int = 0


class PrunerKind(str, enum.Enum):
    none = "none"
    asha = "asha"
    median = "median"


@dataclass
class PrunerConfig:
    # Stops trials across the search whose intermediate results lag (the oracle answers STOPPED):
    # none, asha (asynchronous successive halving) or median.
    kind: PrunerKind = MISSING
    # No trial is pruned before it has trained this many epochs (ASHA's first rung). Earlier, a
    # trial's rank says little of where it ends (bench/pruning.py: 1 lost accuracy, 4 did not).
    min_epochs: int = only("asha", "median", default=4)
    # ASHA's rungs are at min_epochs * reduction_factor^k epochs; a trial reaching one goes on only
    # if it is in the top 1/reduction_factor of the trials that reached it.
    reduction_factor: int = only("asha", default=3)
    # A trial is compared only once this many other trials have reached its rung (asha) or epoch (median).
    warmup_trials: int = only("asha", "median", default=2)


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
    # Used unless the model's space searches learning_rate.
    learning_rate: float = 1e-3
    # null: chosen from the task (sparse categorical cross-entropy for classes).
    loss: str | None = None
    # How a pack's or trial's epochs show: 0 not at all, 1 a progress bar on a terminal (none in a
    # log), 2 one line per epoch. Its table and result lines show unless 0.
    verbose: int = 1
    # Batches run per call into the compiled training graph (fewer Python round trips per
    # epoch; the updates are the same as with 1).
    steps_per_execution: int = 32
    # Feed trials from tf.data pipelines built once per process (true) or from the NumPy
    # arrays, converted again by every fit (false).
    tf_data: bool = True
    # Where a trial keeps its best epoch's weights while it trains: memory (written to Keras
    # Tuner's checkpoint once, when the trial ends) or checkpoint (Keras Tuner writes the
    # file at every improving epoch).
    best_weights: str = "memory"
    # TensorBoard logs, one folder per trial under the search's state folder, also logged as
    # the trial run's `tensorboard` artifacts; `make tensorboard` serves them.
    tensorboard: bool = False
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class TrackingConfig:
    # MLflow tracking URI (each option of conf/tracking sets its own).
    uri: str | None = None
    experiment: str = "sweeplab"
    # Where a new experiment keeps its artifacts (null: beside the SQLite store, or the
    # server's default for a remote store).
    artifact_location: str | None = None
    # Log each trial's trained model (loadable with mlflow.pyfunc.load_model).
    log_models: bool = True


class EnsembleMethod(str, enum.Enum):
    greedy = "greedy"
    optimize = "optimize"


@dataclass
class EnsembleConfig:
    # After the search: an ensemble of the experiment's best finished trials (all families).
    enabled: bool = True
    # Candidates: the best `top_k` finished trials by the tuner's objective.
    top_k: int = 5
    # greedy: forward selection with replacement; optimize: SLSQP over the simplex on the
    # validation loss (falls back to greedy if that is worse).
    method: EnsembleMethod = EnsembleMethod.greedy
    # Greedy stops after this many additions, or earlier when nothing improves.
    max_steps: int = 20
    # MLflow Model Registry name (a new version per build); null: not registered.
    registered_model: str | None = None
    # A budget on the members (weight > 0) summed: trainable parameters and batch-1 latency in ms
    # (the trials' `params` and `latency_ms`); the champion alias moves only to a version within
    # it. null: no budget.
    max_params: int | None = None
    max_latency_ms: float | None = None
    # Trials the pruner stopped (scored by a partly trained model) may be members too.
    include_pruned: bool = False


@dataclass
class RootConfig:
    # Seed for data splits and weight initialization (the tuner has its own).
    seed: int = 42
    # Where Keras Tuner keeps its state (oracle, checkpoints) so that re-running the same
    # command resumes the search.
    state_dir: str = ".sweeplab/tuner"
    # How many rows the leaderboard shows at the end of a search.
    leaderboard_rows: int = 10
    # A trial hyperparameter (e.g. variant) to compare every trial by at the end: a table and
    # a figure, printed and logged to the search run. null: none.
    compare_by: str | None = None
    # The trade-offs whose Pareto front the search run logs (pareto.csv, pareto.png; front trials
    # tagged sweeplab.pareto=true): `<metric>:max|min` each, e.g. [val_accuracy:max, params:min].
    # null: the tuner's objective and params:min.
    pareto: list[str] | None = None


GROUPS = ("data", "model", "tuner", "pruner", "trainer", "tracking", "ensemble")


@dataclass
class AppConfig:
    """A validated config: typed groups plus the parsed search space."""

    data: DataConfig
    model: Any
    tuner: TunerConfig
    pruner: PrunerConfig
    trainer: TrainerConfig
    tracking: TrackingConfig
    ensemble: EnsembleConfig
    seed: int
    state_dir: str
    leaderboard_rows: int
    compare_by: str | None
    space: Space
    resolved: dict  # the whole config as plain data, for logging

    @property
    def family(self) -> str:
        return self.model.family
