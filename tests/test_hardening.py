"""Hardening: no secret in anything logged or written, writes retried without
duplicates, an oracle that answers only its own search, queries that never
truncate (memory released after a search: test_search.py), a search identity that is an
explicit allow-list, and what Keras Tuner scored with several executions; a trial's run
ended once (finished or failed, never both) and soon, whatever its store does."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from conftest import CONF_DIR, ROOT, TINY
from mlflow import MlflowClient

from sweeplab.app import run

SECRET = "s3cretpw"


# --- secrets ---------------------------------------------------------------------------


@pytest.fixture
def postgres_uri(postgres):
    """A fresh PostgreSQL database; trust authentication accepts any password, so the URI can carry one."""
    name = postgres.migrated_name()
    return f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/{name}"


def _texts_under(folder: Path) -> dict[str, str]:
    return {str(p): p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_reaches_no_param_tag_artifact_or_file(
    postgres_uri, make_config, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    overrides = [
        *TINY,
        f"tracking.uri={postgres_uri}",
        f"tracking.artifact_location={tmp_path / 'artifacts'}",
        f"state_dir={tmp_path / 'state'}",
        "tuner.workers=2",
        "ensemble.registered_model=secret-test",
    ]
    result = run(make_config(overrides), overrides=overrides)
    assert result.finished == 2
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err

    client = MlflowClient(postgres_uri)
    runs = client.search_runs([result.experiment_id])
    assert {r.data.tags["sweeplab.role"] for r in runs} == {"search", "trial", "ensemble"}
    for logged in runs:
        for key, value in {**logged.data.params, **logged.data.tags}.items():
            assert SECRET not in value, f"{key} of run {logged.info.run_name}"
        local = Path(client.download_artifacts(logged.info.run_id, "", str(tmp_path / "read" / logged.info.run_id)))
        for path, text in _texts_under(local).items():
            assert SECRET not in text, path
    config = client.download_artifacts(result.parent_run_id, "config.yaml", str(tmp_path / "config"))
    assert "postgres:***@127.0.0.1" in Path(config).read_text()
    # Nothing on disk either: the workers' config file, the tuner state.
    for path, text in _texts_under(tmp_path / "state").items():
        assert SECRET not in text, path


# --- retries ---------------------------------------------------------------------------


@pytest.fixture
def dropped(monkeypatch):
    """What MLflow's HTTP client raises when a connection drops (a real one, to a closed port)."""
    from conftest import free_port
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException) as raised:
        MlflowClient(f"http://127.0.0.1:{free_port()}").log_metric("0" * 32, "loss", 1.0)
    return raised.value


class LosesTheFirstReply:
    """A real client whose first `method` call lands in the store but whose reply is lost."""

    def __init__(self, client, method: str, error: Exception):
        self.client, self.method, self.error, self.lost = client, method, error, False

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name != self.method:
            return call

        def loses_the_reply(*args, **kwargs):
            made = call(*args, **kwargs)
            if not self.lost:
                self.lost = True
                raise self.error
            return made

        return loses_the_reply


def test_a_retried_create_run_makes_one_run(store, dropped):
    from sweeplab.tracking.store import RetryingClient

    raw = MlflowClient(store["uri"])
    experiment_id = raw.create_experiment("retries")
    client = RetryingClient(LosesTheFirstReply(raw, "create_run", dropped), first_wait_s=0.01)
    made = client.create_run(experiment_id, run_name="once", tags={"sweeplab.role": "trial"})
    assert client.raw.lost
    runs = raw.search_runs([experiment_id])
    assert [r.info.run_id for r in runs] == [made.info.run_id]


def test_a_retried_create_logged_model_makes_one_model(store, dropped):
    from sweeplab.tracking.store import RetryingClient

    raw = MlflowClient(store["uri"])
    experiment_id = raw.create_experiment("retries")
    client = RetryingClient(LosesTheFirstReply(raw, "create_logged_model", dropped), first_wait_s=0.01)
    made = client.create_logged_model(experiment_id, name="model", model_type="keras")
    assert client.raw.lost
    assert [m.model_id for m in raw.search_logged_models([experiment_id])] == [made.model_id]


def test_a_retried_log_outputs_links_the_model_once(store, dropped):
    from mlflow.entities import LoggedModelOutput

    from sweeplab.tracking.store import RetryingClient

    raw = MlflowClient(store["uri"])
    experiment_id = raw.create_experiment("retries")
    run_id = raw.create_run(experiment_id).info.run_id
    model_id = raw.create_logged_model(experiment_id, name="model").model_id
    client = RetryingClient(LosesTheFirstReply(raw, "log_outputs", dropped), first_wait_s=0.01)
    client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
    assert client.raw.lost
    assert [o.model_id for o in raw.get_run(run_id).outputs.model_outputs] == [model_id]


def test_a_retried_log_inputs_links_each_data_set_once(store, make_config, dropped):
    from sweeplab.config.validation import validate
    from sweeplab.data import datasets
    from sweeplab.tracking.lineage import log_dataset_inputs, split_datasets
    from sweeplab.tracking.store import RetryingClient

    cfg = validate(make_config([]))
    raw = MlflowClient(store["uri"])
    experiment_id = raw.create_experiment("retries")
    run_id = raw.create_run(experiment_id).info.run_id
    client = RetryingClient(LosesTheFirstReply(raw, "log_inputs", dropped), first_wait_s=0.01)
    log_dataset_inputs(client, run_id, split_datasets(datasets.load(cfg.data, cfg.seed)))
    assert client.raw.lost
    contexts = [i.tags[0].value for i in raw.get_run(run_id).inputs.dataset_inputs]
    assert sorted(contexts) == ["test", "training", "validation"]


def test_writes_that_could_duplicate_are_not_retried_blindly():
    from sweeplab.tracking.store import RetryingClient

    # Sent twice, each of these makes two or is refused: each is retried only after a look-up.
    assert not {"create_run", "create_logged_model", "log_outputs", "create_model_version"} & (
        RetryingClient.IDEMPOTENT_WRITES
    )


# --- runs that end once, and soon --------------------------------------------------------


def trial_runs_of(uri: str, client=None, count: int = 1) -> list:
    """`count` trial runs of a new search in the store at `uri`, written through `client`."""
    from sweeplab.tracking.runs import SearchRun, TrialRun

    raw = MlflowClient(uri)
    experiment_id = raw.create_experiment("ends")
    search = SearchRun.attach(client or raw, experiment_id, raw.create_run(experiment_id).info.run_id)
    return [TrialRun(search, str(i), "mlp", {"units": 16}) for i in range(count)]


class HoldsTheFinish:
    """A real client whose set_terminated(FINISHED) waits until released, as a slow store's would."""

    def __init__(self, client):
        self.client, self.waiting, self.release = client, threading.Event(), threading.Event()

    def set_terminated(self, run_id, status=None, **kwargs):
        if status == "FINISHED":
            self.waiting.set()
            self.release.wait(120)
        return self.client.set_terminated(run_id, status, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_run_failed_while_it_is_being_finished_ends_once(store):
    """The heartbeat's thread abandons a trial while the writer thread writes its FINISHED:
    the first to start ending the run ends it; the other writes nothing."""
    client = HoldsTheFinish(MlflowClient(store["uri"]))
    (trial,) = trial_runs_of(store["uri"], client)
    finishing = threading.Thread(target=trial.finish)
    finishing.start()
    assert client.waiting.wait(120)
    trial.fail("the chief is gone (test)")
    client.release.set()
    finishing.join(120)
    ended = MlflowClient(store["uri"]).get_run(trial.run_id)
    assert ended.info.status == "FINISHED" and "sweeplab.failure" not in ended.data.tags


class RefusesParams:
    """A real client whose params never land (a store gone right after the run was created)."""

    def __init__(self, client, error: Exception):
        self.client, self.error = client, error

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        if params:
            raise self.error
        return self.client.log_batch(run_id, metrics, params, tags)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_trial_run_that_cannot_be_set_up_ends_failed_not_running(store, dropped):
    from sweeplab.tracking.store import RetryingClient

    client = RetryingClient(RefusesParams(MlflowClient(store["uri"]), dropped), budget_s=0)
    with pytest.raises(type(dropped)):
        trial_runs_of(store["uri"], client)
    raw = MlflowClient(store["uri"])
    (made,) = raw.search_runs([raw.get_experiment_by_name("ends").experiment_id], "tags.`sweeplab.role` = 'trial'")
    assert made.info.status == "FAILED"
    assert made.data.tags["sweeplab.failure"].startswith(
        "its parameters or data sets could not be logged: MlflowException: API request to http://127.0.0.1"
    )


def test_abandoning_a_pack_takes_seconds_even_with_the_store_down_and_the_writer_stuck(store, monkeypatch):
    """A worker that lost its chief ends every run it trains before it exits: each gets a short
    budget, all at once, none waits for the writer thread (stuck behind a store that hangs)."""
    from conftest import free_port

    from sweeplab.search.tuning import ABANDON_S, TrackedTrials
    from sweeplab.tracking import writer
    from sweeplab.tracking.store import RetryingClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    runs = trial_runs_of(store["uri"], count=8)
    down = RetryingClient(MlflowClient(f"http://127.0.0.1:{free_port()}"), budget_s=150)
    for trial_run in runs[4:]:
        trial_run.client = down  # the store these runs write to has gone away
    stuck = threading.Event()
    for trial_run in runs:
        trial_run.epochs.pending.append(writer.submit(stuck.wait, 300))
    tuner = TrackedTrials.__new__(TrackedTrials)
    tuner.training_runs = runs
    started = time.monotonic()
    abandoning = threading.Thread(target=tuner.abandon_trial, args=("the chief is gone (test)",), daemon=True)
    abandoning.start()
    abandoning.join(120)
    took = time.monotonic() - started
    stuck.set()
    assert not abandoning.is_alive() and took < ABANDON_S + 5, took
    raw = MlflowClient(store["uri"])
    for trial_run in runs[:4]:
        ended = raw.get_run(trial_run.run_id)
        assert ended.info.status == "FAILED" and ended.data.tags["sweeplab.failure"] == "the chief is gone (test)"
    search = runs[0].search
    assert sorted(search.unclosed) == ["4", "5", "6", "7"]
    assert "API request to http://127.0.0.1" in search.unclosed["4"]


def test_trial_queries_page_through_every_run(store):
    from sweeplab.tracking.queries import trial_runs

    client = MlflowClient(store["uri"])
    experiment_id = client.create_experiment("many")
    for _ in range(7):
        made = client.create_run(experiment_id, tags={"sweeplab.role": "trial"})
        client.set_terminated(made.info.run_id, "FINISHED")
    assert len(trial_runs(client, experiment_id, page_size=3)) == 7


def test_searches_that_log_the_same_data_set_at_once_all_link_it(store, make_config):
    """A parallel multirun starts its searches together: each logs the same data set, and the
    inserts that lose the race are sent again and link the one that won."""
    import threading

    from sweeplab.config.validation import validate
    from sweeplab.data import datasets
    from sweeplab.tracking import lineage

    cfg = validate(make_config([]))
    splits = lineage.split_datasets(datasets.load(cfg.data, cfg.seed))
    client = MlflowClient(store["uri"])
    experiment_id = client.create_experiment("together")
    run_ids = [client.create_run(experiment_id).info.run_id for _ in range(6)]
    start, errors = threading.Barrier(len(run_ids)), []

    def log(run_id):
        start.wait()
        try:
            lineage.log_dataset_inputs(MlflowClient(store["uri"]), run_id, splits)
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=log, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for run_id in run_ids:
        names = sorted(i.dataset.name for i in client.get_run(run_id).inputs.dataset_inputs)
        assert names == ["digits-test", "digits-train", "digits-val"]


# --- the oracle --------------------------------------------------------------------------


def test_the_oracle_answers_only_calls_with_the_search_token(tmp_path):
    from concurrent import futures

    import grpc
    import keras_tuner as kt
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    from sweeplab.search.oracle_access import Access, channel

    hp = kt.HyperParameters()
    hp.Int("units", 1, 4)
    oracle = kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=3, hyperparameters=hp)
    oracle._set_project_dir(str(tmp_path), "oracle")  # where Keras Tuner saves each trial
    token = "the-search-token"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[Access(token)])
    protos.get_service_grpc().add_OracleServicer_to_server(OracleServicer(oracle), server)
    port = server.add_insecure_port("127.0.0.1:0")  # the port the system picked, reported by gRPC
    assert port > 0
    server.start()
    try:
        request = protos.get_service().CreateTrialRequest(tuner_id="intruder")
        plain = protos.get_service_grpc().OracleStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        with pytest.raises(grpc.RpcError) as refused:
            plain.CreateTrial(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert oracle.trials == {}  # the refused call changed nothing
        trusted = protos.get_service_grpc().OracleStub(channel(f"127.0.0.1:{port}", token, "worker0", 10))
        trial = trusted.CreateTrial(protos.get_service().CreateTrialRequest(tuner_id="worker0"), timeout=10).trial
        assert trial.trial_id in oracle.trials
    finally:
        server.stop(grace=None)


# --- search identity ---------------------------------------------------------------------


def _every_composed_config(make_config):
    for group in ("data", "model", "tuner", "trainer", "tracking", "ensemble", "sweep"):
        for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
            cfg = make_config([f"{group}={option}"])
            yield f"{group}={option}", {k: v for k, v in _resolved(cfg).items() if k != "hydra"}


def _resolved(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False)


def test_every_config_key_is_classified_for_the_search_identity(make_config):
    from sweeplab.config.identity import EVERY_KEY, IDENTITY, NOT_IDENTITY, unclassified

    for choice, resolved in _every_composed_config(make_config):
        assert unclassified(resolved) == [], f"{choice}: add these keys to config/identity.py"
    for group, keys in IDENTITY.items():
        other = NOT_IDENTITY.get(group)
        assert other is None or (keys != EVERY_KEY and other != EVERY_KEY and not keys & other), group


def test_identity_follows_what_changes_results(make_config):
    from sweeplab.config.identity import search_key, unclassified

    base = _resolved(make_config([]))
    assert unclassified({**base, "new_knob": 1}) == ["new_knob"]

    def key(**changes):
        resolved = json.loads(json.dumps(base))
        for dotted, value in changes.items():
            group, name = dotted.split("__")
            resolved[group][name] = value
        return search_key(resolved)

    same = key()
    assert key(trainer__verbose=0) == same and key(tuner__workers=4) == same and key(tracking__uri="x") == same
    assert key(trainer__epochs=99) != same and key(tuner__seed=7) != same and key(data__val_fraction=0.3) != same


# --- several executions per trial ---------------------------------------------------------


def test_several_executions_log_what_keras_tuner_scored(store, make_config, tmp_path):
    overrides = [*TINY, *store["overrides"], "ensemble=none", "tuner.executions_per_trial=2"]
    result = run(make_config(overrides))
    client = MlflowClient(store["uri"])
    trials = client.search_runs([result.experiment_id], "tags.`sweeplab.role` = 'trial'")
    assert len(trials) == 2
    for trial in trials:
        metrics = trial.data.metrics
        assert metrics["executions"] == 2
        (saved,) = (tmp_path / "state").rglob(f"trial_{trial.data.tags['sweeplab.trial_id']}/trial.json")
        assert metrics["scored_val_accuracy"] == pytest.approx(json.loads(saved.read_text())["score"], abs=1e-9)
        # The logged model is the best execution's best epoch: never worse than the mean Keras Tuner scored.
        assert metrics["final_val_accuracy"] >= metrics["scored_val_accuracy"] - 1e-6
        # Both executions' epochs are in the curves.
        assert len(client.get_metric_history(trial.info.run_id, "val_accuracy")) == 2 * 2


def test_every_declared_dependency_that_sweeplab_imports_is_installed():
    """scipy (the ensemble optimizer) and psycopg (PostgreSQL stores) are direct dependencies."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split("==")[0].split("[")[0].strip() for d in declared}
    assert {"scipy", "psycopg"} <= names
    assert os.path.exists(ROOT / "requirements.lock")
