"""MLflow: the store, one parent run per search, one child run per trial.

Everything goes through `MlflowClient` with explicit run ids, so no global
"active run" state leaks between a search and its trials.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

from sweeplab.errors import TrackingError

DEFAULT_STORE_DIR = "mlruns"
# Writers wait this long for a SQLite lock instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60
# A failed write to the store is retried this many times, waiting 1, 2, 4, ... s.
WRITE_RETRIES = 5
# The first request to an HTTP store: how long to wait, so a wrong URI fails in seconds
# (MLflow's own default retries for about 4 minutes).
PROBE_TIMEOUT_S = 10
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000

ROLE = "sweeplab.role"
FAMILY = "sweeplab.family"
TUNER = "sweeplab.tuner"
TRIAL_ID = "sweeplab.trial_id"
WORKER = "sweeplab.worker"
SEARCH_KEY = "sweeplab.search_key"
OVERRIDES = "sweeplab.overrides"
METHOD = "sweeplab.ensemble_method"
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


# scheme://user:PASSWORD@ anywhere in a text (a URI alone, an override, an error message).
_PASSWORD = re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")


def redact(uri: str) -> str:
    """The URI (or any text holding URIs) with every password replaced, safe to print or log."""
    return _PASSWORD.sub(r"\g<keep>***@", uri)


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
    client = RetryingClient(MlflowClient(tracking_uri=uri))
    experiment = _get_experiment(client.raw, tracking.experiment, uri)
    if experiment is not None:
        return client, uri, experiment.experiment_id
    location = tracking.artifact_location or default_artifact_location(uri)
    with _store_errors(uri):
        try:
            experiment_id = client.create_experiment(tracking.experiment, artifact_location=location)
        except MlflowException:
            # Another job created it between our lookup and create.
            experiment_id = client.get_experiment_by_name(tracking.experiment).experiment_id
    return client, uri, experiment_id


def open_experiment(uri: str | None, name: str) -> tuple["MlflowClient", str, str]:  # noqa: F821
    """An experiment that must already exist (commands over finished sweeps)."""
    from mlflow import MlflowClient

    uri = resolve_uri(uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise TrackingError(f"tracking uri: no MLflow store at {display_uri(uri)!r}; run a sweep first or pass --tracking-uri")
    client = MlflowClient(tracking_uri=uri)
    experiment = _get_experiment(client, name, uri)
    if experiment is None:
        known = [e.name for e in client.search_experiments()]
        raise TrackingError(f"experiment: got {name!r}; expected one of {known} (in {display_uri(uri)})")
    return client, uri, experiment.experiment_id


def _get_experiment(client, name: str, uri: str):
    """The experiment, or None; the store's first request, so a wrong URI fails in seconds."""
    with _store_errors(uri), _fast_http():
        return client.get_experiment_by_name(name)


@contextlib.contextmanager
def _store_errors(uri: str):
    """Any store failure (unreachable server, bad database URL, permissions) as a TrackingError naming the URI."""
    try:
        yield
    except Exception as err:
        raise TrackingError(
            f"tracking.uri: cannot use the MLflow store {redact(uri)!r}: {redact(str(err)).splitlines()[0]}"
        ) from None


class _fast_http:
    """Within this block, MLflow HTTP requests neither retry nor wait long."""

    SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_TIMEOUT_S)}

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.SETTINGS}
        for key, value in self.SETTINGS.items():
            os.environ.setdefault(key, value)  # a user's own setting wins

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def is_transient(err: BaseException) -> bool:
    """A store error worth retrying: a locked database, a dropped connection, a busy server."""
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        return err.error_code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED") or "locked" in str(err)
    return isinstance(err, (ConnectionError, TimeoutError)) or type(err).__module__.startswith("requests")


class RetryingClient:
    """An MlflowClient whose writes are retried on transient errors, so a trial's results
    survive a locked SQLite database or a server restart. Lookups are not retried."""

    WRITES = {
        "create_run", "log_batch", "log_metric", "log_param", "set_tag", "set_terminated",
        "update_run", "log_text", "log_figure", "log_artifact", "log_artifacts", "log_dict",
    }

    def __init__(self, client, retries: int = WRITE_RETRIES, first_wait_s: float = 1.0):
        self.raw, self.retries, self.first_wait_s = client, retries, first_wait_s

    def __getattr__(self, name):
        method = getattr(self.raw, name)
        if name not in self.WRITES:
            return method

        def retrying(*args, **kwargs):
            for attempt in range(self.retries + 1):
                try:
                    return method(*args, **kwargs)
                except Exception as err:
                    if attempt == self.retries or not is_transient(err):
                        raise
                    wait = self.first_wait_s * 2**attempt
                    print(f"[sweeplab] MLflow {name} failed ({short_reason(redact(str(err)))}); "
                          f"retrying in {wait:g} s", flush=True)
                    time.sleep(wait)

        return retrying


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


def log_metrics(client, run_id: str, metrics: dict, step: int = 0, timestamp_ms: int | None = None) -> None:
    """Every metric in one `log_batch`."""
    from mlflow.entities import Metric

    now = timestamp_ms or int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def log_bytes(client, run_id: str, data: bytes, path: str) -> None:
    """`data` as the artifact `path` (a file name, optionally under folders)."""
    folder, _, name = path.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, name)
        with open(local, "wb") as handle:
            handle.write(data)
        client.log_artifact(run_id, local, folder or None)


def trial_runs(client, experiment_id: str, parent_run_id: str | None = None, status: str = "FINISHED") -> list:
    """An experiment's trial runs with `status`, optionally of one search only."""
    query = f"tags.`{ROLE}` = 'trial' and attributes.status = '{status}'"
    if parent_run_id:
        query += f" and tags.`{PARENT}` = '{parent_run_id}'"
    return client.search_runs([experiment_id], filter_string=query, max_results=5000)


class SearchRun:
    """The parent run of one search; reused when the same search resumes."""

    def __init__(self, client, experiment_id: str, search_key: str, fresh: bool):
        self.client = client
        self.experiment_id = experiment_id
        self.search_key = search_key
        self.run_id = None if fresh else self._find_existing()
        self.resumed = self.run_id is not None

    @classmethod
    def attach(cls, client, experiment_id: str, run_id: str) -> "SearchRun":
        """The running search of a trial worker: its process started and ends it."""
        search = cls.__new__(cls)
        search.client, search.experiment_id, search.run_id = client, experiment_id, run_id
        search.search_key, search.resumed = None, True
        return search

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
        tags = {k: redact(str(v)) for k, v in tags.items()}  # the overrides may hold a tracking.uri
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={ROLE: "search", SEARCH_KEY: self.search_key, **tags}
        )
        self.run_id = run.info.run_id
        log_params(self.client, self.run_id, params)
        self.client.log_text(self.run_id, config_yaml, "config.yaml")
        return self.run_id

    def mark_interrupted_trials(self) -> None:
        """Trial runs left RUNNING by a crash are FAILED; Keras Tuner retries those trials."""
        for run in trial_runs(self.client, self.experiment_id, self.run_id, status="RUNNING"):
            self.client.set_tag(run.info.run_id, FAILURE, "interrupted (the search stopped during this trial)")
            self.client.set_terminated(run.info.run_id, "FAILED")

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


_metric_writer = None


def metric_writer():
    """This process's one background thread for epoch metrics: writes keep their order.

    Not MLflow's own async logging: ending a run waits up to a second for its
    queue to notice, and its failed writes are not retried.
    """
    global _metric_writer
    if _metric_writer is None:
        from concurrent.futures import ThreadPoolExecutor

        _metric_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeplab-metrics")
    return _metric_writer


class EpochLogger:
    """Keras callback body: one `log_batch` per epoch with every metric, written
    in the background so training does not wait for the store; `flush()` waits
    and raises the first write that failed after its retries."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self.history: dict[str, list[float]] = {}
        self.pending: list = []

    def flush(self) -> None:
        while self.pending:
            self.pending.pop(0).result()

    def callback(self):
        import keras

        logger = self

        class _Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
                for key, value in logs.items():
                    logger.history.setdefault(key, []).append(value)
                now = int(time.time() * 1000)
                logger.pending.append(
                    metric_writer().submit(log_metrics, logger.client, logger.run_id, logs, epoch, now)
                )

        return _Callback()


class TrialRun:
    """The child run of one Keras Tuner trial."""

    def __init__(self, search: SearchRun, trial_id: str, family: str, values: dict, worker: str | None = None):
        self.client = search.client
        tags = {PARENT: search.run_id, ROLE: "trial", TRIAL_ID: trial_id, FAMILY: family}
        if worker:
            tags[WORKER] = worker
        run = self.client.create_run(search.experiment_id, run_name=f"trial-{trial_id}", tags=tags)
        self.run_id = run.info.run_id
        log_params(self.client, self.run_id, {k: str(v) for k, v in values.items()})
        self.epochs = EpochLogger(self.client, self.run_id)

    def log_results(self, metrics: dict) -> None:
        log_metrics(self.client, self.run_id, metrics)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_figure(self, figure, path: str) -> None:
        self.client.log_figure(self.run_id, figure, path)

    def log_bytes(self, data: bytes, path: str) -> None:
        log_bytes(self.client, self.run_id, data, path)

    def log_model(self, model, input_example) -> None:
        """The trained Keras model under artifact path `model` (MLflow's keras flavor)."""
        import mlflow
        from mlflow.models import infer_signature

        import keras

        # A direct call: predict() would trace one more graph for five rows.
        output = keras.tree.map_structure(keras.ops.convert_to_numpy, model(input_example, training=False))
        signature = infer_signature(input_example, output)
        if isinstance(output, dict):
            self._log_multi_head_model(model, input_example, signature)
            return
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

    def _log_multi_head_model(self, model, input_example, signature) -> None:
        """Several named outputs: a pyfunc that returns every head (see multi_head_model.py)."""
        import mlflow

        from sweeplab import multi_head_model

        with tempfile.TemporaryDirectory() as tmp:
            keras_file = os.path.join(tmp, "model.keras")
            model.save(keras_file)
            path = os.path.join(tmp, "model")
            mlflow.pyfunc.save_model(
                path,
                python_model=multi_head_model.__file__,
                artifacts={"keras_model": keras_file},
                signature=signature,
                input_example=input_example,
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
