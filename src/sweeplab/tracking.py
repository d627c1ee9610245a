"""MLflow: the store, one parent run per search, one child run per trial.

Everything goes through `MlflowClient` with explicit run ids, so no global
"active run" state leaks between a search and its trials.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sweeplab.errors import TrackingError

DEFAULT_STORE_DIR = "mlruns"
# Writers wait this long for a SQLite lock instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000

ROLE = "sweeplab.role"
FAMILY = "sweeplab.family"
TUNER = "sweeplab.tuner"
TRIAL_ID = "sweeplab.trial_id"
SEARCH_KEY = "sweeplab.search_key"
OVERRIDES = "sweeplab.overrides"
FAILURE = "sweeplab.failure"
PARENT = "mlflow.parentRunId"


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use: the configured one, or the SQLite store under mlruns/."""
    if not uri:
        uri = f"sqlite:///{Path.cwd() / DEFAULT_STORE_DIR / 'mlflow.db'}"
    if uri.startswith("sqlite:") and "timeout=" not in uri:
        uri += ("&" if "?" in uri else "?") + f"timeout={SQLITE_BUSY_TIMEOUT_S}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


def redact(uri: str) -> str:
    """The URI with any password replaced, safe to print or log."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def display_uri(uri: str) -> str:
    """The URI as a user would type it: no password, no SQLite timeout option."""
    uri = redact(uri)
    if uri.startswith("sqlite:"):
        uri = re.sub(r"[?&]timeout=\d+$", "", uri)
    return uri


def default_artifact_location(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside it, in artifacts/."""
    db = sqlite_path(uri)
    return (db.parent / "artifacts").as_uri() if db else None


def connect(tracking) -> tuple["MlflowClient", str, str]:  # noqa: F821
    """Open the store, create the experiment if needed; return (client, uri, experiment id)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = resolve_uri(tracking.uri)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            location = tracking.artifact_location or default_artifact_location(uri)
            try:
                experiment_id = client.create_experiment(tracking.experiment, artifact_location=location)
            except MlflowException:
                # Another job created it between our lookup and create.
                experiment_id = client.get_experiment_by_name(tracking.experiment).experiment_id
        else:
            experiment_id = experiment.experiment_id
    except Exception as err:  # unreachable server, bad database URL, permissions
        raise TrackingError(
            f"tracking.uri: cannot use the MLflow store {redact(uri)!r}: {redact(str(err)).splitlines()[0]}"
        ) from None
    return client, uri, experiment_id


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> {'a.b.c': 'value'} for MLflow params."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def log_params(client, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    items = [Param(k, redact(v)) for k, v in params.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])


def log_metrics(client, run_id: str, metrics: dict, step: int = 0, synchronous: bool = True):
    """One `log_batch`; with synchronous=False MLflow writes it in the background
    and the returned operation's `wait()` blocks until it is stored."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    return client.log_batch(run_id, metrics=batch, synchronous=synchronous)


class SearchRun:
    """The parent run of one search; reused when the same search resumes."""

    def __init__(self, client, experiment_id: str, search_key: str, fresh: bool):
        self.client = client
        self.experiment_id = experiment_id
        self.search_key = search_key
        self.run_id = None if fresh else self._find_existing()
        self.resumed = self.run_id is not None

    def _find_existing(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{SEARCH_KEY}` = '{self.search_key}' and tags.`{ROLE}` = 'search'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def start(self, name: str, tags: dict, params: dict, config_yaml: str) -> str:
        if self.resumed:
            self.client.update_run(self.run_id, status="RUNNING")
            self.mark_interrupted_trials()
            return self.run_id
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={ROLE: "search", SEARCH_KEY: self.search_key, **tags}
        )
        self.run_id = run.info.run_id
        log_params(self.client, self.run_id, params)
        self.client.log_text(self.run_id, config_yaml, "config.yaml")
        return self.run_id

    def mark_interrupted_trials(self) -> None:
        """Trial runs left RUNNING by a crash are FAILED; Keras Tuner retries those trials."""
        for run in self.trial_runs(status="RUNNING"):
            self.client.set_tag(run.info.run_id, FAILURE, "interrupted (the search stopped during this trial)")
            self.client.set_terminated(run.info.run_id, "FAILED")

    def trial_runs(self, status: str | None = None) -> list:
        query = f"tags.`{PARENT}` = '{self.run_id}'"
        if status:
            query += f" and attributes.status = '{status}'"
        return self.client.search_runs([self.experiment_id], filter_string=query, max_results=5000)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


class EpochLogger:
    """Keras callback body: one `log_batch` per epoch with every metric, written
    in the background so training does not wait for the store; `flush()` waits."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self.history: dict[str, list[float]] = {}
        self.pending: list = []

    def flush(self) -> None:
        while self.pending:
            self.pending.pop(0).wait()

    def callback(self):
        import keras

        logger = self

        class _Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
                for key, value in logs.items():
                    logger.history.setdefault(key, []).append(value)
                operation = log_metrics(logger.client, logger.run_id, logs, step=epoch, synchronous=False)
                if operation is not None:
                    logger.pending.append(operation)

        return _Callback()


class TrialRun:
    """The child run of one Keras Tuner trial."""

    def __init__(self, search: SearchRun, trial_id: str, family: str, values: dict):
        self.client = search.client
        run = self.client.create_run(
            search.experiment_id,
            run_name=f"trial-{trial_id}",
            tags={PARENT: search.run_id, ROLE: "trial", TRIAL_ID: trial_id, FAMILY: family},
        )
        self.run_id = run.info.run_id
        log_params(self.client, self.run_id, {k: str(v) for k, v in values.items()})
        self.epochs = EpochLogger(self.client, self.run_id)

    def log_results(self, metrics: dict) -> None:
        log_metrics(self.client, self.run_id, metrics)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_figure(self, figure, path: str) -> None:
        self.client.log_figure(self.run_id, figure, path)

    def log_model(self, model, input_example) -> None:
        """The trained Keras model under artifact path `model` (MLflow's keras flavor)."""
        import mlflow
        from mlflow.models import infer_signature

        import keras

        # A direct call: predict() would trace one more graph for five rows.
        output = keras.ops.convert_to_numpy(model(input_example, training=False))
        signature = infer_signature(input_example, output)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model")
            # mlflow.keras writes the input example before creating the folder.
            os.makedirs(path)
            mlflow.keras.save_model(
                model,
                path,
                signature=signature,
                input_example=input_example,
                # Passing requirements avoids MLflow's slow inference subprocess.
                pip_requirements=model_requirements(),
            )
            self.client.log_artifacts(self.run_id, path, "model")

    def finish(self) -> None:
        self.epochs.flush()
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, reason: str, status: str = "FAILED") -> None:
        try:
            self.epochs.flush()
        except Exception:  # the failure being recorded matters more than a lost epoch metric
            pass
        self.client.set_tag(self.run_id, FAILURE, reason[:5000])
        self.client.set_terminated(self.run_id, status)


def model_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    requirements = []
    for name in ("keras", "tensorflow", "tensorflow-cpu"):
        try:
            requirements.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return requirements


def short_reason(message: str) -> str:
    """The last meaningful line of a traceback."""
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    return re.sub(r"\s+", " ", lines[-1]) if lines else "unknown error"
