"""The oracle's gates and its hand-overs, with real gRPC servers and clients on 127.0.0.1:
the token, the lease, TLS, the token file's mode, a waiting worker's pace, and what a
hand-over does to the store (a real MLflow store, or one that does not answer)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from certs import self_signed
from conftest import free_port
from processes import env, until
from stores import sqlite_uri

TOKEN = "the-search-token"


def _oracle(tmp_path: Path, kind: str = "random", units: tuple = (4,), retries: int = 1):
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Choice("units", list(units))
    oracles = {"random": kt.oracles.RandomSearchOracle, "grid": kt.oracles.GridSearchOracle}
    # One retry, as tuner.max_retries_per_trial's default: a lost tuner's trial goes to another once.
    oracle = oracles[kind](objective="val_loss", max_trials=3, hyperparameters=hp, max_retries_per_trial=retries)
    oracle._set_project_dir(str(tmp_path), f"oracle-{kind}")  # where Keras Tuner saves each trial
    return oracle


def _serve(oracle, tls: tuple[Path, Path] | None = None, access=None):
    """(server, access, port): `oracle` served as the chief serves it, over TLS with `tls`."""
    from sweeplab.config.schema import OracleConfig
    from sweeplab.search import chief
    from sweeplab.search.oracle_access import Access

    access = access or Access(TOKEN)
    cert, key = (str(tls[0]), str(tls[1])) if tls else (None, None)
    server, _servicer, port = chief._start_server(oracle, OracleConfig(tls_cert=cert, tls_key=key), access, 1)
    return server, access, port


def _stub(port: int, tuner_id: str = "worker0", token: str = TOKEN, tls=None):
    from keras_tuner.src import protos

    from sweeplab.search.oracle_access import channel

    return protos.get_service_grpc().OracleStub(channel(f"127.0.0.1:{port}", token, tuner_id, 10, tls))


def _space_request():
    from keras_tuner.src import protos

    return protos.get_service().GetSpaceRequest()


def _slow_access(delay_s: float):
    """The chief's gate on a loaded chief: every call answered `delay_s` late."""
    from sweeplab.search.oracle_access import Access

    class Slow(Access):
        calls = 0

        def intercept_service(self, continuation, handler_call_details):
            self.calls += 1
            time.sleep(delay_s)
            return super().intercept_service(continuation, handler_call_details)

    return Slow(TOKEN)


# --- the token file -------------------------------------------------------------------------

# In a process that may create files but not write a byte into them: what mode does the file have
# between its creation and its content? (No window where another user could open it.)
_WRITE_NOTHING = """
import resource, signal, sys
from pathlib import Path
from sweeplab.search.chief import write_private
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
try:
    write_private(Path(sys.argv[1]), "secret")
except OSError as err:
    print("write refused:", err.strerror)
"""


@pytest.mark.parametrize("existing", [False, True], ids=["new file", "world-readable file there before"])
def test_the_token_file_is_private_from_its_creation_on(tmp_path, existing):
    token_file = tmp_path / "oracle.token"
    if existing:
        token_file.write_text("old")
        token_file.chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-c", _WRITE_NOTHING, str(token_file)], env=env(), capture_output=True, text=True, timeout=60
    )
    assert "write refused: File too large" in result.stdout, result.stderr
    assert token_file.stat().st_mode & 0o777 == 0o600


def test_the_token_file_holds_the_token(tmp_path):
    from sweeplab.search.chief import write_private

    write_private(tmp_path / "oracle.token", "secret")
    assert (tmp_path / "oracle.token").read_text() == "secret"
    assert (tmp_path / "oracle.token").stat().st_mode & 0o777 == 0o600


# --- the gates: token, lease ------------------------------------------------------------------


def test_a_wrong_or_missing_token_is_refused_and_the_chief_says_so(tmp_path, capfd):
    oracle = _oracle(tmp_path)
    server, _access, port = _serve(oracle)
    try:
        for token in ("a-guess", ""):
            with pytest.raises(grpc.RpcError) as refused:
                _stub(port, token=token).GetSpace(_space_request(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "missing or wrong token" in refused.value.details()
    finally:
        server.stop(grace=None)
    printed = capfd.readouterr().err
    assert printed.count("oracle: refused /keras_tuner.Oracle/GetSpace: missing or wrong token") == 2


def test_a_tuner_past_its_lease_is_refused_and_a_fresh_tuner_id_is_served(tmp_path, capfd):
    from sweeplab.search.oracle_access import lease_expired

    oracle = _oracle(tmp_path)
    server, access, port = _serve(oracle)
    try:
        _stub(port, "agent-stalled").GetSpace(_space_request(), timeout=10)  # heard from: the lease holds
        until(lambda: access.silent_for(0.1) == ["agent-stalled"], 30, "the lease to expire")
        with pytest.raises(grpc.RpcError) as refused:
            _stub(port, "agent-stalled").GetSpace(_space_request(), timeout=10)
        assert lease_expired(refused.value)
        _stub(port, "agent-rejoined").GetSpace(_space_request(), timeout=10)  # a fresh tuner id is served
    finally:
        server.stop(grace=None)
    assert "refused /keras_tuner.Oracle/GetSpace from agent-stalled: lease expired" in capfd.readouterr().err


def test_a_slow_chief_is_not_a_lost_chief_to_the_heartbeat(tmp_path):
    """Beats every 0.5 s, each answered 1.5 s late (a loaded machine), give-up after 3 s:
    the chief answers every beat, so the worker goes on."""
    from sweeplab.search.oracle_access import heartbeat

    server, access, port = _serve(_oracle(tmp_path), access=_slow_access(1.5))
    losses = []
    try:
        heartbeat(f"127.0.0.1:{port}", TOKEN, "agent-slow", every_s=0.5, give_up_s=3, on_loss=losses.append)
        until(lambda: access.calls >= 5 or losses, 120, "five beats")
    finally:
        server.stop(grace=None)
    assert access.calls >= 5 and not losses, losses


def test_a_call_without_a_tuner_id_is_refused(tmp_path):
    server, access, port = _serve(_oracle(tmp_path))
    try:
        with pytest.raises(grpc.RpcError) as refused:
            _stub(port, tuner_id="").GetSpace(_space_request(), timeout=10)
    finally:
        server.stop(grace=None)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not access.last_seen


def test_a_call_that_lands_after_its_tuners_hand_over_is_handed_over_again(tmp_path, capsys):
    """A call passes the gate, then its lease expires and the chief hands its trial over, then the
    call runs: it takes a trial again, which the chief's next pass hands over once more."""
    from sweeplab.search.chief import reap

    oracle = _oracle(tmp_path, retries=2)  # each hand-over counts as a try
    client, search, runs = _search_with_runs(tmp_path, ["agent-late@host:1"])
    server, access, port = _serve(oracle)
    try:
        _stub(port, "agent-late").GetSpace(_space_request(), timeout=10)
        trial = oracle.create_trial("agent-late")
        until(lambda: (reap(oracle, access, search, 0.1), "agent-late" in access.expired)[1], 30, "the hand-over")
        assert oracle._retry_queue == [trial.trial_id]
        assert oracle.create_trial("agent-late").trial_id == trial.trial_id  # the late call runs
        reap(oracle, access, search, 0.1)
    finally:
        server.stop(grace=None)
    assert "agent-late" not in oracle.ongoing_trials and "agent-late" not in oracle.tuner_ids
    assert oracle._retry_queue == [trial.trial_id]
    assert client.get_run(runs["agent-late@host:1"]).info.status == "FAILED"


def test_rejoining_keeps_one_layer_over_keras_tuners_oracle_client(monkeypatch):
    from keras_tuner.src.distribute import oracle_client

    from sweeplab.search import oracle_access

    original = oracle_access._keras_tuner_client or oracle_client.OracleClient
    monkeypatch.setattr(oracle_client, "OracleClient", oracle_client.OracleClient)  # restored afterwards
    for tuner_id in ("worker0", "worker0-0a1b2c", "worker0-3d4e5f"):  # a worker that rejoined twice
        oracle_access.identify_keras_tuner_clients(TOKEN, tuner_id, 10)
    assert oracle_client.OracleClient.__bases__ == (original,)


# --- TLS --------------------------------------------------------------------------------------


def test_over_tls_only_a_client_that_trusts_the_certificate_is_served(tmp_path):
    from sweeplab.search.oracle_access import Tls

    cert, key = self_signed(tmp_path, "127.0.0.1")
    stranger, _ = self_signed(tmp_path, "127.0.0.1", name="stranger")
    server, _access, port = _serve(_oracle(tmp_path), tls=(cert, key))
    try:
        _stub(port, tls=Tls(cert.read_bytes())).GetSpace(_space_request(), timeout=10)
        # A local worker connects by 127.0.0.1 to a certificate that names another address (never reached).
        named, named_key = self_signed(tmp_path, "10.1.2.3", name="named")
        other, _access2, other_port = _serve(_oracle(tmp_path), tls=(named, named_key))
        try:
            _stub(other_port, tls=Tls(named.read_bytes(), name="10.1.2.3")).GetSpace(_space_request(), timeout=10)
            untrusting = {
                "in clear": _stub(port),
                "the system's roots": _system_roots_stub(port),
                "another certificate": _stub(port, tls=Tls(stranger.read_bytes())),
                # Trusted, but it names 10.1.2.3, not the 127.0.0.1 connected to.
                "a certificate naming another address": _stub(other_port, tls=Tls(named.read_bytes())),
            }
            for what, stub in untrusting.items():
                with pytest.raises(grpc.RpcError) as refused:
                    stub.GetSpace(_space_request(), timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, what
        finally:
            other.stop(grace=None)
    finally:
        server.stop(grace=None)


def _system_roots_stub(port: int):
    from keras_tuner.src import protos

    from sweeplab.search.oracle_access import _Identify

    secure = grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials())
    return protos.get_service_grpc().OracleStub(grpc.intercept_channel(secure, _Identify(TOKEN, "worker0", 5)))


# --- a waiting worker's pace -----------------------------------------------------------------


def test_a_worker_told_to_wait_asks_again_at_a_bounded_pace(tmp_path, monkeypatch):
    """Keras Tuner's own search loop, as a distributed worker, while the grid's last trial trains
    elsewhere: the oracle answers IDLE, and the worker must not ask again in a busy loop."""
    import keras
    import keras_tuner as kt
    import numpy as np
    from keras_tuner.src.distribute import oracle_client
    from keras_tuner.src.engine import trial as trial_module

    from sweeplab.search.oracle_access import identify_keras_tuner_clients

    oracle = _oracle(tmp_path, "grid")
    asked = []
    create_trial = oracle.create_trial
    oracle.create_trial = lambda tuner_id: (asked.append(time.monotonic()), create_trial(tuner_id))[1]
    server, _access, port = _serve(oracle)
    held = create_trial("worker-elsewhere")  # the grid's only trial, trained by another worker
    monkeypatch.setattr(oracle_client, "OracleClient", oracle_client.OracleClient)  # restored afterwards
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker-waiting")
    identify_keras_tuner_clients(TOKEN, "worker-waiting", wait_s=10)

    def build(hp):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(hp.Choice("units", [4]))])
        model.compile(loss="mse")
        return model

    tuner = kt.GridSearch(build, objective="val_loss", directory=str(tmp_path), project_name="waiting")
    x = np.zeros((8, 2))
    searching = threading.Thread(
        target=tuner.search, args=(x, x[:, :1]), kwargs=dict(validation_data=(x, x[:, :1]), epochs=1, verbose=0)
    )
    try:
        searching.start()
        until(lambda: asked, 60, "the waiting worker's first ask")
        started = time.monotonic()
        until(lambda: time.monotonic() - started > 3, 30, "three seconds of waiting")
        window = time.monotonic() - started
        calls = len([t for t in asked if t >= started])
        held.status = trial_module.TrialStatus.FAILED  # the trial elsewhere ends; the grid is done
        oracle.end_trial(held)
        searching.join(60)
        assert not searching.is_alive(), "the worker did not stop once the grid was done"
    finally:
        server.stop(grace=None)
    assert 1 <= calls <= window / 0.5 + 2, f"{calls} CreateTrial calls in {window:.1f} s"


# --- hand-overs and the store ------------------------------------------------------------------


def _search_with_runs(tmp_path: Path, workers: list[str]):
    """A real search run in a SQLite store and, per worker tag, a RUNNING run of trial 0."""
    from mlflow import MlflowClient

    from sweeplab.tracking.runs import SearchRun, TrialRun

    client = MlflowClient(sqlite_uri(tmp_path))
    experiment_id = client.create_experiment("handover", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment_id, tags={"sweeplab.role": "search"})
    search = SearchRun.attach(client, experiment_id, parent.info.run_id)
    runs = {w: TrialRun(search, "0", "mlp", {"units": 4}, worker=w).run_id for w in workers}
    return client, search, runs


def test_a_hand_over_fails_only_the_lost_tuners_runs(tmp_path, capsys):
    """The lost tuner's trials, its pack's slots' included; not those of a tuner whose id it starts
    (worker1, worker10), nor another's run of the same trial."""
    from sweeplab.search.chief import _hand_over

    lost, owner, neighbour = "worker1@host:1", "agent-3d4e5f@host:1", "worker10@host:2"
    client, search, runs = _search_with_runs(tmp_path, [lost, owner, neighbour])
    oracle = _oracle(tmp_path, units=(4, 8, 16))
    trials = [oracle.create_trial(slot) for slot in ("worker1-pack0", "worker1-pack1", "worker10-pack0")]
    _hand_over(oracle, "worker1", search, lease_s=5)
    assert sorted(oracle._retry_queue) == sorted(t.trial_id for t in trials[:2])
    assert list(oracle.ongoing_trials) == ["worker10-pack0"] and oracle.tuner_ids == {"worker10-pack0"}
    assert client.get_run(runs[lost]).info.status == "FAILED"
    assert "agent lost: worker1 " in client.get_run(runs[lost]).data.tags["sweeplab.failure"]
    assert client.get_run(runs[owner]).info.status == "RUNNING"  # the new owner's run goes on
    assert client.get_run(runs[neighbour]).info.status == "RUNNING"


def test_a_store_error_during_a_hand_over_is_retried_then_reported_and_the_search_goes_on(
    tmp_path, monkeypatch, capsys
):
    from mlflow import MlflowClient

    from sweeplab.search.chief import _hand_over
    from sweeplab.tracking.runs import SearchRun
    from sweeplab.tracking.store import RetryingClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    # A tracking server that is down: MLflow's client raises MlflowException (INTERNAL_ERROR); the
    # chief's client retries writes (here within 1 s).
    client = RetryingClient(MlflowClient(f"http://127.0.0.1:{free_port()}"), budget_s=1)
    search = SearchRun.attach(client, "1", "0" * 32)
    oracle = _oracle(tmp_path)
    trial = oracle.create_trial("worker1")
    _hand_over(oracle, "worker1", search, lease_s=5)
    assert oracle._retry_queue == [trial.trial_id]  # the trial goes to another all the same
    printed = capsys.readouterr().out
    assert re.search(r"could not mark worker1's runs FAILED \(MlflowException: .+\); the search goes on", printed)


# --- what the chief gives workers and agents ---------------------------------------------------


def test_local_workers_of_an_oracle_in_clear_get_no_tls_settings_meant_for_agents(tmp_path, monkeypatch, make_config):
    from sweeplab.config.validation import validate
    from sweeplab.search.chief import ENV_ORACLE_NAME, _worker_env

    _client, search, _runs = _search_with_runs(tmp_path, [])
    exported = {
        "SWEEPLAB_ORACLE_CERT": str(tmp_path / "cert.pem"),
        "SWEEPLAB_ORACLE_CERT_SHA256": "ab" * 32,
        ENV_ORACLE_NAME: "oracle.example",
    }
    for name, value in exported.items():
        monkeypatch.setenv(name, value)
    cfg = validate(make_config(["tuner.workers=2", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]))
    env = _worker_env(cfg, search, TOKEN, "127.0.0.1:5000", 5000)
    assert not set(exported) & set(env), {k: env[k] for k in set(exported) & set(env)}
    assert env["SWEEPLAB_ORACLE_TOKEN"] == TOKEN


@pytest.mark.parametrize("tls", [True, False], ids=["TLS", "in clear"])
def test_the_oracle_address_is_published_after_how_to_trust_it(tmp_path, tls):
    """An agent that finds the address finds the certificate (or "none") already there."""
    from mlflow import MlflowClient

    from sweeplab.config.schema import OracleConfig
    from sweeplab.search.chief import _publish
    from sweeplab.tracking.runs import SearchRun

    class Recording(MlflowClient):  # the real client, remembering the order of its writes
        writes: list = []

        def set_tag(self, run_id, key, value, *args, **kwargs):
            self.writes.append(key)
            return super().set_tag(run_id, key, value, *args, **kwargs)

        def log_text(self, run_id, text, artifact_file, *args, **kwargs):
            self.writes.append(artifact_file)
            return super().log_text(run_id, text, artifact_file, *args, **kwargs)

    _client, search, _runs = _search_with_runs(tmp_path, [])
    client = Recording(sqlite_uri(tmp_path))
    cert, key = self_signed(tmp_path, "127.0.0.1") if tls else (None, None)
    _publish(
        SearchRun.attach(client, search.experiment_id, search.run_id),
        OracleConfig(tls_cert=cert and str(cert), tls_key=key and str(key)),
        "127.0.0.1:5000",
    )
    expected = ["oracle-cert.pem", "sweeplab.oracle_cert"] if tls else ["sweeplab.oracle_cert"]
    assert client.writes == [*expected, "sweeplab.oracle"]
    assert client.get_run(search.run_id).data.tags["sweeplab.oracle"] == "127.0.0.1:5000"


# --- a search over TLS, with a real chief and agent --------------------------------------------


@pytest.mark.slow
def test_a_search_over_tls_is_trained_by_an_agent_that_trusts_its_certificate(tmp_path, processes):
    from mlflow import MlflowClient
    from test_agents import assert_every_trial_finished_once, printed_agent_command, start_agent, start_chief

    cert, key = self_signed(tmp_path, "127.0.0.1")
    chief = start_chief(
        tmp_path,
        processes,
        "trainer.epochs=1",
        "tuner.pack=2",
        f"tuner.oracle.tls_cert={cert}",
        f"tuner.oracle.tls_key={key}",
    )
    command = printed_agent_command(chief)
    assert "oracle calls use TLS" in chief.output() and "not encrypted" not in chief.output()
    agent = start_agent(command, tmp_path, processes, "agent")  # the certificate from the search run
    assert chief.wait() == 0, chief.output()[-3000:]
    assert agent.wait(60) == 0, agent.output()[-3000:]
    assert "(TLS)" in agent.output()
    finished = assert_every_trial_finished_once(tmp_path)
    client = MlflowClient(sqlite_uri(tmp_path / "mlruns"))
    search_id = finished[0].data.tags["mlflow.parentRunId"]
    logged = client.download_artifacts(search_id, "oracle-cert.pem", str(tmp_path))
    assert Path(logged).read_bytes() == cert.read_bytes()


@pytest.mark.slow
def test_an_agent_refuses_a_swapped_certificate_or_a_downgrade_to_clear(tmp_path, processes):
    """Whoever may edit the search run could swap the certificate logged there, or tag the oracle as
    in clear: the pinned agent and the agent of a search configured with TLS both refuse, before
    sending the token."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from mlflow import MlflowClient
    from test_agents import printed_agent_command, start_agent, start_chief, trial_runs

    cert, key = self_signed(tmp_path, "127.0.0.1")
    chief = start_chief(
        tmp_path, processes, "trainer.epochs=1", f"tuner.oracle.tls_cert={cert}", f"tuner.oracle.tls_key={key}"
    )
    command = printed_agent_command(chief)
    pin = x509.load_pem_x509_certificate(cert.read_bytes()).fingerprint(hashes.SHA256()).hex()
    assert command.endswith(f" --oracle-cert-sha256 {pin}"), command
    search_id = re.search(r"sweeplab\.agent (\w+) ", command).group(1)
    client = MlflowClient(sqlite_uri(tmp_path / "mlruns"))

    forged, _ = self_signed(tmp_path, "127.0.0.1", name="forged")
    client.log_text(search_id, forged.read_text(), "oracle-cert.pem")
    swapped = start_agent(command, tmp_path, processes, "swapped")
    assert swapped.wait(120) == 2, swapped.output()[-3000:]
    assert f"not the pinned {pin} (--oracle-cert-sha256): refusing to send the token" in swapped.output()

    client.set_tag(search_id, "sweeplab.oracle_cert", "none")
    downgraded = start_agent(command.replace(f" --oracle-cert-sha256 {pin}", ""), tmp_path, processes, "downgraded")
    assert downgraded.wait(120) == 2, downgraded.output()[-3000:]
    assert "its config sets tuner.oracle.tls_cert: refusing to send the token in clear" in downgraded.output()
    assert trial_runs(tmp_path) == [] and "oracle: refused" not in chief.output()
    chief.stop()
