"""The MLflow store: which URI, opening it (fast failure when unreachable),
its experiment, and a client whose writes survive a locked database or a
restarted server. Also the command-line arguments that name a store.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import time
import uuid
from pathlib import Path

from sweeplab.errors import TrackingError, one_line, redact
from sweeplab.tracking.tags import CREATE_KEY

DEFAULT_STORE_DIR = "mlruns"
# Writers wait this long for a SQLite lock instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60
# How long one write may keep retrying a store that is down (a server restart, a database
# outage), waiting 1, 2, 4, ... s (at most MAX_WAIT_S) between tries; SWEEPLAB_WRITE_BUDGET_S overrides it.
WRITE_BUDGET_S = 150
MAX_WAIT_S = 30
# MLflow's own HTTP retries, kept short so that RetryingClient's deadline bounds a write: by
# default MLflow retries for about 4 minutes, and both layers retrying multiplied the waits.
# A user's own setting of these variables wins.
MLFLOW_HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# The first request to an HTTP store: how long to wait, so a wrong URI fails in seconds
# (MLflow's own default retries for about 4 minutes).
PROBE_TIMEOUT_S = 10


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


def connect(tracking) -> tuple[MlflowClient, str, str]:  # noqa: F821
    """Open the store, create the experiment if needed; return (client, uri, experiment id)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from sweeplab.tracking.tags import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

    # "Creating initial MLflow database tables..." is MLflow's business, not the user's.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    budget_s = write_budget_s()  # a bad value fails before the store is touched
    uri = resolve_uri(tracking.uri)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    use_short_http_retries()
    client = RetryingClient(MlflowClient(tracking_uri=uri), budget_s)
    # Tagged as machine-learning work (the UI's experiment kind), not a GenAI app: see tracking/ui.py.
    experiment = _get_experiment(client.raw, tracking.experiment, uri)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            # Made by an older sweeplab (it is about to hold sweeplab runs anyway); a kind already set stays.
            with _store_errors(uri):
                client.raw.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return client, uri, experiment.experiment_id
    location = tracking.artifact_location or default_artifact_location(uri)
    with _store_errors(uri):
        try:
            experiment_id = client.create_experiment(
                tracking.experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        except MlflowException:
            # Another job created it between our lookup and create.
            experiment_id = client.get_experiment_by_name(tracking.experiment).experiment_id
    return client, uri, experiment_id


def open_experiment(uri: str | None, name: str) -> tuple[MlflowClient, str, str]:  # noqa: F821
    """An experiment that must already exist (commands over finished sweeps)."""
    from mlflow import MlflowClient

    uri = resolve_uri(uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise TrackingError(
            f"tracking uri: no MLflow store at {display_uri(uri)!r}; run a sweep first or pass --tracking-uri"
        )
    client = MlflowClient(tracking_uri=uri)
    experiment = _get_experiment(client, name, uri)
    if experiment is None:
        known = [e.name for e in client.search_experiments()]
        raise TrackingError(f"experiment: got {name!r}; expected one of {known} (in {display_uri(uri)})")
    return client, uri, experiment.experiment_id


def open_run(uri: str | None, run_id: str):
    """(client, uri, run) for a run that must exist (an agent joining a search)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = resolve_uri(uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise TrackingError(f"tracking uri: no MLflow store at {display_uri(uri)!r}; pass the search's --tracking-uri")
    use_short_http_retries()
    client = RetryingClient(MlflowClient(tracking_uri=uri))
    with _fast_http():
        try:
            run = client.get_run(run_id)
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise TrackingError(f"run {run_id!r}: no such run in {display_uri(uri)}") from None
            raise TrackingError(
                f"tracking.uri: cannot use the MLflow store {display_uri(uri)!r}: {one_line(str(err))}"
            ) from None
        except Exception as err:
            raise TrackingError(
                f"tracking.uri: cannot use the MLflow store {display_uri(uri)!r}: {one_line(str(err))}"
            ) from None
    return client, uri, run


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


# The values use_short_http_retries set, to tell them from a user's own.
_set_here: dict[str, str] = {}


def _set_by_user(key: str) -> bool:
    return key in os.environ and os.environ[key] != _set_here.get(key)


def use_short_http_retries() -> None:
    """MLflow's HTTP client retries briefly in this process (and the workers it starts);
    RetryingClient does the waiting for a store that is down."""
    for key, value in MLFLOW_HTTP_SETTINGS.items():
        if not _set_by_user(key):
            os.environ[key] = _set_here[key] = value


class _fast_http:
    """Within this block, MLflow HTTP requests neither retry nor wait long."""

    SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_TIMEOUT_S)}

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.SETTINGS}
        for key, value in self.SETTINGS.items():
            if not _set_by_user(key):  # a user's own setting wins
                os.environ[key] = value

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def is_transient(err: BaseException) -> bool:
    """A store error worth retrying: a locked database, a server out of reach or busy.

    MLflow's HTTP client wraps a refused or dropped connection, a timeout, or 5xx answers
    its own retries gave up on in MlflowException(INTERNAL_ERROR), the requests error as
    its cause or context: those are retried (a server whose database is down answers 500,
    and MLflow itself counts 500 as transient); a bad request gets a 4xx and is not.
    """
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        if err.error_code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED") or "locked" in str(err):
            return True
        return err.error_code == "INTERNAL_ERROR" and _unreachable(err.__cause__ or err.__context__)
    return _unreachable(err)


def _unreachable(err: BaseException | None) -> bool:
    """A connection that failed, dropped or timed out, or a server that kept answering 5xx."""
    from requests import exceptions as http
    from urllib3.exceptions import ProtocolError

    if isinstance(err, http.SSLError):  # a certificate problem does not go away by waiting
        return False
    return isinstance(
        err,
        (
            ConnectionError,
            TimeoutError,
            http.ConnectionError,
            http.Timeout,
            http.RetryError,
            http.ChunkedEncodingError,
            ProtocolError,
        ),
    )


def write_budget_s() -> float:
    """How long a write may retry: SWEEPLAB_WRITE_BUDGET_S, else WRITE_BUDGET_S."""
    value = os.environ.get("SWEEPLAB_WRITE_BUDGET_S", str(WRITE_BUDGET_S))
    try:
        budget = float(value)
    except ValueError:
        budget = -1.0
    if not budget >= 0:
        raise TrackingError(f"SWEEPLAB_WRITE_BUDGET_S: got {value!r}; expected a number of seconds >= 0")
    return budget


class RetryingClient:
    """An MlflowClient whose writes are retried on transient errors, so a trial's results
    survive a locked SQLite database or a server restart: each write tries again until
    `budget_s` has passed since its first try. Only writes that land the same however
    often they are sent are retried as they are (MLflow links a data set input to a run
    once however often it is logged); creating a run or a logged model, or linking a
    model as a run's output, first looks for what an earlier try may have made.
    Lookups are not retried."""

    IDEMPOTENT_WRITES = {
        "log_batch",
        "log_metric",
        "log_param",
        "set_tag",
        "set_terminated",
        "update_run",
        "log_text",
        "log_figure",
        "log_artifact",
        "log_artifacts",
        "log_dict",
        "log_model_artifacts",
        "finalize_logged_model",
        "log_inputs",
    }

    def __init__(self, client, budget_s: float | None = None, first_wait_s: float = 1.0):
        self.raw, self.first_wait_s = client, first_wait_s
        self.budget_s = write_budget_s() if budget_s is None else budget_s

    def __getattr__(self, name):
        method = getattr(self.raw, name)
        if name not in self.IDEMPOTENT_WRITES:
            return method
        return lambda *args, **kwargs: self._retried(name, lambda attempt: method(*args, **kwargs))

    def create_run(self, experiment_id: str, **kwargs):
        """One run, however often the request has to be sent."""
        return self._created(
            "create_run",
            self.raw.create_run,
            experiment_id,
            kwargs,
            lambda where: self.raw.search_runs([experiment_id], where, max_results=1),
        )

    def create_logged_model(self, experiment_id: str, **kwargs):
        """One logged model, however often the request has to be sent."""
        return self._created(
            "create_logged_model",
            self.raw.create_logged_model,
            experiment_id,
            kwargs,
            lambda where: self.raw.search_logged_models([experiment_id], where, max_results=1),
        )

    def _created(self, name: str, create, experiment_id: str, kwargs: dict, find):
        """`create(experiment_id, **kwargs)`, retried: each try after the first looks up what an
        earlier one may have made (its reply lost) by a tag key of this call, `find(filter)`."""
        key = uuid.uuid4().hex
        kwargs["tags"] = {**(kwargs.get("tags") or {}), CREATE_KEY: key}

        def once(attempt: int):
            made = find(f"tags.`{CREATE_KEY}` = '{key}'") if attempt else None
            return made[0] if made else create(experiment_id, **kwargs)

        return self._retried(name, once)

    def log_outputs(self, run_id: str, models: list) -> None:
        """`models` linked as the run's outputs, retried: a try after the first links only those an
        earlier one did not (the store refuses a second link of the same model)."""

        def once(attempt: int):
            left = models
            if attempt:
                outputs = self.raw.get_run(run_id).outputs
                linked = {o.model_id for o in (outputs.model_outputs if outputs else [])}
                left = [m for m in models if m.model_id not in linked]
            if left:
                self.raw.log_outputs(run_id, left)

        self._retried("log_outputs", once)

    def _retried(self, name: str, call):
        deadline = time.monotonic() + self.budget_s
        attempt = 0
        while True:
            try:
                return call(attempt)
            except Exception as err:
                wait = min(self.first_wait_s * 2**attempt, MAX_WAIT_S)
                if not is_transient(err) or time.monotonic() + wait > deadline:
                    raise
                print(f"[sweeplab] MLflow {name} failed ({one_line(str(err))}); retrying in {wait:g} s", flush=True)
                time.sleep(wait)
                attempt += 1


def add_tracking_uri_argument(p: argparse.ArgumentParser, what: str = "MLflow tracking URI") -> None:
    """--tracking-uri, as every command takes it; `what` says which store it names."""
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help=f"{what} (default: $MLFLOW_TRACKING_URI, else the SQLite store under ./mlruns)",
    )


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """--experiment, --tracking-uri, --objective, --direction: what commands over a finished sweep share."""
    p.add_argument("--experiment", required=True, help="MLflow experiment name (tracking.experiment of the sweep)")
    add_tracking_uri_argument(p, "the experiment's MLflow tracking URI")
    p.add_argument("--objective", help="metric to rank and weight by (default: the sweep's tuner.objective)")
    p.add_argument("--direction", choices=["max", "min"], help="default: the sweep's tuner.direction")
