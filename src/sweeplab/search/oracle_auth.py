"""A shared token on every call to a search's oracle.

Keras Tuner's oracle is a gRPC service with no authentication of its own: any
process that reaches its port could ask for trials or report results. The
chief checks a token on every call (a server interceptor) and refuses, logs and
ignores a call without it; its workers send the token with every call.
"""

from __future__ import annotations

import collections
import hmac
import os
import secrets
import sys

import grpc

ENV_TOKEN = "SWEEPLAB_ORACLE_TOKEN"
_METADATA_KEY = "x-sweeplab-oracle-token"


def search_token() -> str:
    """The token of this search: the team's shared one if set, else a fresh secret."""
    return os.environ.get(ENV_TOKEN) or secrets.token_urlsafe(32)


class TokenCheck(grpc.ServerInterceptor):
    """Lets a call through only when it carries the search's token."""

    def __init__(self, token: str):
        self.token = token.encode()

        def refuse(request, context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "sweeplab oracle: missing or wrong token")

        self._refused = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(self, continuation, handler_call_details):
        sent = dict(handler_call_details.invocation_metadata or ()).get(_METADATA_KEY, "")
        if hmac.compare_digest(sent.encode(), self.token):
            return continuation(handler_call_details)
        print(f"[sweeplab] oracle: refused {handler_call_details.method}: missing or wrong token", file=sys.stderr,
              flush=True)
        return self._refused


class _CallDetails(
    collections.namedtuple("_CallDetails", "method timeout metadata credentials wait_for_ready compression"),
    grpc.ClientCallDetails,
):
    pass


class _SendToken(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, token: str):
        self.token = token

    def intercept_unary_unary(self, continuation, details, request):
        metadata = [*(details.metadata or ()), (_METADATA_KEY, self.token)]
        return continuation(
            _CallDetails(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready,
                         details.compression),
            request,
        )


def send_token_from_keras_tuner(token: str) -> None:
    """Every OracleClient Keras Tuner makes in this process sends `token` (it builds its own channel)."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_client

    class TokenOracleClient(oracle_client.OracleClient):
        def __init__(self, oracle):
            super().__init__(oracle)
            address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
            channel = grpc.intercept_channel(grpc.insecure_channel(address), _SendToken(token))
            self.stub = protos.get_service_grpc().OracleStub(channel)

    # Looked up on the module when a tuner is built (BaseTuner.__init__).
    oracle_client.OracleClient = TokenOracleClient
