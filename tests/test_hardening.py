"""Hardening: no secret in anything logged or written, writes retried without
duplicates, an oracle that answers only its own search, queries that never
truncate, memory released between searches, a search identity that is an
explicit allow-list, and what Keras Tuner scored with several executions."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import CONF_DIR, TINY
from sweeplab.app import run

SECRET = "s3cretpw"


# --- secrets ---------------------------------------------------------------------------


@pytest.fixture
def postgres_uri(postgres):
    """A fresh PostgreSQL database; trust authentication accepts any password, so the URI can carry one."""
    name = postgres.new_name()
    postgres.create(name)
    return f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/{name}"


def _texts_under(folder: Path) -> dict[str, str]:
    return {str(p): p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_reaches_no_param_tag_artifact_or_file(postgres_uri, make_config, tmp_path,
                                                                             monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    overrides = [*TINY, f"tracking.uri={postgres_uri}", f"tracking.artifact_location={tmp_path / 'artifacts'}",
                 f"state_dir={tmp_path / 'state'}", "tuner.workers=2", "ensemble.registered_model=secret-test"]
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


class LosesTheFirstReply:
    """A real client whose first create_run lands in the store but whose reply is lost."""

    def __init__(self, client):
        self.client, self.lost = client, False

    def create_run(self, *args, **kwargs):
        made = self.client.create_run(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise ConnectionError("connection reset by peer (after the server created the run)")
        return made

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_retried_create_run_makes_one_run(store):
    from sweeplab.tracking.store import RetryingClient

    raw = MlflowClient(store["uri"])
    experiment_id = raw.create_experiment("retries")
    client = RetryingClient(LosesTheFirstReply(raw), first_wait_s=0.01)
    made = client.create_run(experiment_id, run_name="once", tags={"sweeplab.role": "trial"})
    assert client.raw.lost
    runs = raw.search_runs([experiment_id])
    assert [r.info.run_id for r in runs] == [made.info.run_id]


def test_writes_that_could_duplicate_are_not_retried_blindly():
    from sweeplab.tracking.store import RetryingClient

    # Creating a logged model or logging inputs twice makes two: neither is in the blind-retry set.
    assert not {"create_run", "create_logged_model", "log_inputs", "log_outputs", "create_model_version"} & (
        RetryingClient.IDEMPOTENT_WRITES
    )


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
    import grpc
    import keras_tuner as kt
    from concurrent import futures
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


# --- memory between searches -------------------------------------------------------------


def test_a_search_leaves_nothing_frozen_out_of_the_garbage_collector(store, make_config):
    overrides = [*TINY, *store["overrides"], "ensemble=none"]
    run(make_config(overrides))
    assert gc.get_freeze_count() == 0


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

    declared = tomllib.loads((CONF_DIR.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split("==")[0].split("[")[0].strip() for d in declared}
    assert {"scipy", "psycopg"} <= names
    assert os.path.exists(CONF_DIR.parent / "requirements.lock")
