"""Who may talk to a search's oracle, and who is still there.

Keras Tuner's oracle is a gRPC service with no authentication of its own: any
process that reaches its port could ask for trials or report results. The
chief checks a token on every call (a server interceptor) and refuses, logs
and ignores a call without it. Every call also names its tuner, so the chief
knows when each worker or agent was last heard from: one silent for longer
than the lease has lost its trial (`chief.py` hands it to another), and its
later calls are refused. Workers and agents send the token and their tuner id
with every call, and a heartbeat between calls. With `tuner.oracle.tls_cert`
every call goes over TLS, the client trusting that certificate alone.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import os
import secrets
import ssl
import sys
import threading
import time

import grpc

from sweeplab.config.schema import ORACLE_TOKEN_ENV
from sweeplab.errors import ConfigError
from sweeplab.net import is_loopback

ENV_TOKEN = ORACLE_TOKEN_ENV
_TOKEN_KEY = "x-sweeplab-oracle-token"
_TUNER_KEY = "x-sweeplab-tuner-id"
LEASE_EXPIRED = "lease expired, trial handed to another"
# A tuner the oracle told to wait (IDLE: trials still running elsewhere) asks again after this long.
IDLE_WAIT_S = 0.5
# The longest a heartbeat waits for one answer: a loaded chief may be slow, not gone.
_BEAT_CALL_S = 5.0


@dataclasses.dataclass(frozen=True)
class Tls:
    """How a client checks the oracle: its certificate (the one root trusted) and, for a client that
    connects by another address than the certificate names (a local worker, by 127.0.0.1), that name."""

    cert: bytes
    name: str | None = None


def search_token(host: str) -> str:
    """The token of a search whose oracle listens on `host`: the team's shared one
    (SWEEPLAB_ORACLE_TOKEN; validation requires it off loopback), else a fresh secret."""
    token = os.environ.get(ENV_TOKEN)
    if token:
        return token
    if not is_loopback(host):
        raise ConfigError("tuner.oracle.host", host, f"loopback, or a shared secret in {ENV_TOKEN}")
    return secrets.token_urlsafe(32)


def cert_sha256(pem: bytes) -> str | None:
    """The SHA-256 of a PEM certificate's DER bytes, in hex (as `openssl x509 -fingerprint -sha256`
    prints it, without colons); None for a file that holds no certificate."""
    try:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))).hexdigest()
    except (ValueError, UnicodeDecodeError):
        return None


class Access(grpc.ServerInterceptor):
    """Lets a call through only with the search's token and a tuner whose lease holds;
    records when each tuner was last heard from."""

    def __init__(self, token: str):
        self.token = token.encode()
        self.last_seen: dict[str, float] = {}
        self.expired: set[str] = set()
        self._lock = threading.Lock()

        def refuse(request, context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "sweeplab oracle: missing or wrong token or tuner id")

        def expired(request, context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"sweeplab oracle: {LEASE_EXPIRED}")

        self._refused = grpc.unary_unary_rpc_method_handler(refuse)
        self._expired = grpc.unary_unary_rpc_method_handler(expired)

    def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        if not hmac.compare_digest(metadata.get(_TOKEN_KEY, "").encode(), self.token):
            print(
                f"[sweeplab] oracle: refused {handler_call_details.method}: missing or wrong token",
                file=sys.stderr,
                flush=True,
            )
            return self._refused
        tuner_id = metadata.get(_TUNER_KEY)
        if not tuner_id:  # a call without a tuner could not be refused once its lease expired
            print(f"[sweeplab] oracle: refused {handler_call_details.method}: no tuner id", file=sys.stderr, flush=True)
            return self._refused
        with self._lock:
            if tuner_id in self.expired:
                print(
                    f"[sweeplab] oracle: refused {handler_call_details.method} from {tuner_id}: {LEASE_EXPIRED}",
                    file=sys.stderr,
                    flush=True,
                )
                return self._expired
            self.last_seen[tuner_id] = time.monotonic()
        return continuation(handler_call_details)

    def silent_for(self, seconds: float) -> list[str]:
        """Tuners not heard from for `seconds`; from now on their calls are refused."""
        now = time.monotonic()
        with self._lock:
            lost = [t for t, seen in self.last_seen.items() if now - seen > seconds]
            for tuner_id in lost:
                del self.last_seen[tuner_id]
                self.expired.add(tuner_id)
        return lost


class _CallDetails(
    collections.namedtuple("_CallDetails", "method timeout metadata credentials wait_for_ready compression"),
    grpc.ClientCallDetails,
):
    pass


class _Identify(grpc.UnaryUnaryClientInterceptor):
    """Adds the token and the tuner id to every call; a bounded wait for the oracle
    instead of Keras Tuner's hour, so a worker whose chief is gone stops."""

    def __init__(self, token: str, tuner_id: str, wait_s: float):
        self.metadata = [(_TOKEN_KEY, token), (_TUNER_KEY, tuner_id)]
        self.wait_s = wait_s

    def intercept_unary_unary(self, continuation, details, request):
        timeout = min(details.timeout, self.wait_s) if details.timeout else self.wait_s
        return continuation(
            _CallDetails(
                details.method,
                timeout,
                [*(details.metadata or ()), *self.metadata],
                details.credentials,
                details.wait_for_ready,
                details.compression,
            ),
            request,
        )


def channel(address: str, token: str, tuner_id: str, wait_s: float, tls: Tls | None = None):
    if tls is None:
        raw = grpc.insecure_channel(address)
    else:
        options = [("grpc.ssl_target_name_override", tls.name)] if tls.name else []
        raw = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=tls.cert), options)
    return grpc.intercept_channel(raw, _Identify(token, tuner_id, wait_s))


# Keras Tuner's own OracleClient, kept at the first replacement: a rejoin subclasses it, not our last one.
_keras_tuner_client = None


def identify_keras_tuner_clients(token: str, tuner_id: str, wait_s: float, tls: Tls | None = None) -> None:
    """Every OracleClient Keras Tuner makes in this process sends `token` and `tuner_id`
    (it builds its own channel, from KERASTUNER_ORACLE_IP and _PORT), over TLS with `tls`."""
    global _keras_tuner_client
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_client
    from keras_tuner.src.engine.trial import TrialStatus

    if _keras_tuner_client is None:
        _keras_tuner_client = oracle_client.OracleClient

    class IdentifiedOracleClient(_keras_tuner_client):
        def __init__(self, oracle):
            super().__init__(oracle)
            address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
            self.stub = protos.get_service_grpc().OracleStub(channel(address, token, tuner_id, wait_s, tls))
            self._idle_until: dict[str, float] = {}

        def create_trial(self, tuner_id):
            # Keras Tuner asks again at once after IDLE: one ask per IDLE_WAIT_S per slot, not a busy loop.
            time.sleep(max(0.0, self._idle_until.pop(tuner_id, 0.0) - time.monotonic()))
            trial = super().create_trial(tuner_id)
            if trial.status == TrialStatus.IDLE:
                self._idle_until[tuner_id] = time.monotonic() + IDLE_WAIT_S
            return trial

    # Looked up on the module when a tuner is built (BaseTuner.__init__).
    oracle_client.OracleClient = IdentifiedOracleClient


def lease_expired(err) -> bool:
    """The chief refused a call because this tuner's lease expired (not for a wrong token)."""
    return err.code() == grpc.StatusCode.PERMISSION_DENIED and LEASE_EXPIRED in (err.details() or "")


def oracle_trouble(err, address: str, wait_s: float) -> str:
    """A failed call to the oracle, in words."""
    if err.code() == grpc.StatusCode.PERMISSION_DENIED:
        return f"the oracle at {address} refused this worker: {err.details()}"
    return f"the search's oracle at {address} has not answered for {wait_s:g} s ({err.code().name})"


def _ask_space(address: str, token: str, tuner_id: str, tls: Tls | None):
    """A function that asks the oracle for its search space within `timeout` s: the cheapest
    call that tells the chief this tuner is alive, and this tuner whether its lease holds."""
    from keras_tuner.src import protos

    stub = protos.get_service_grpc().OracleStub(channel(address, token, tuner_id, float("inf"), tls))
    request = protos.get_service().GetSpaceRequest()
    return lambda timeout: stub.GetSpace(request, timeout=timeout)


def heartbeat(
    address: str,
    token: str,
    tuner_id: str,
    every_s: float,
    give_up_s: float,
    on_loss,
    on_expired=lambda: None,
    tls: Tls | None = None,
) -> None:
    """In a daemon thread: tell the chief this tuner is alive every `every_s`; call
    `on_loss(reason)` when the chief refuses the token or has not answered for `give_up_s`
    (stopped or killed), `on_expired()` when it refused this tuner for an expired lease (the
    tuner's next call is refused too, and its caller rejoins under a new tuner id)."""
    ask = _ask_space(address, token, tuner_id, tls)

    def beat():
        answered, failures = time.monotonic(), 0
        while True:
            try:
                ask(min(give_up_s, max(every_s, _BEAT_CALL_S)))
                answered, failures = time.monotonic(), 0
            except grpc.RpcError as err:
                if lease_expired(err):
                    return on_expired()
                failures += 1
                # Two failures in a row: one call cut short by this process's own stall is no loss.
                gone = failures > 1 and time.monotonic() - answered > give_up_s
                if err.code() == grpc.StatusCode.PERMISSION_DENIED or gone:
                    return on_loss(oracle_trouble(err, address, give_up_s))
            time.sleep(every_s)

    threading.Thread(target=beat, name="sweeplab-heartbeat", daemon=True).start()
