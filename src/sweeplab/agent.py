"""`sweeplab agent SEARCH_RUN_ID [--tracking-uri URI] [--oracle-cert FILE]` (or `python -m sweeplab.agent`):
train trials of a running search from any machine.

The search's MLflow run holds what an agent needs: the resolved config
(`config.yaml`) and the address of the search's oracle (tag
`sweeplab.oracle`). The agent loads the data set on this machine, asks the
oracle for trials, trains them and logs them under the search's run until the
oracle says the search is done. The oracle's token comes from
SWEEPLAB_ORACLE_TOKEN (the search prints the command with it). An oracle that
serves TLS is trusted by its certificate alone: the one logged on the search
run (`oracle-cert.pem`), or `--oracle-cert` / SWEEPLAB_ORACLE_CERT. Whoever may
edit the search run could replace that certificate: `--oracle-cert-sha256` /
SWEEPLAB_ORACLE_CERT_SHA256 (in the command the search prints) pins it, and an
agent never falls back to a clear oracle for a search configured with TLS.

`tuner.launcher=ray|slurm` starts agents with this command as the children of Ray actors or SLURM
jobs (search/launchers.py), the store's URI and the secrets in their environment.
"""

from __future__ import annotations

import argparse
import os
import sys

from sweeplab.config.schema import AGENT_NAME_ENV, ORACLE_CERT_ENV, ORACLE_CERT_SHA256_ENV, ORACLE_TOKEN_ENV
from sweeplab.errors import SweeplabError, command_boundary
from sweeplab.tracking.store import add_tracking_uri_argument


def parser(prog: str = "python -m sweeplab.agent") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Train trials of a running search from any machine.")
    p.add_argument("search_run_id", metavar="SEARCH_RUN_ID", help="the MLflow run id of the search to join")
    add_tracking_uri_argument(p, "the search's MLflow tracking URI")
    p.add_argument(
        "--oracle-cert",
        metavar="FILE",
        default=os.environ.get(ORACLE_CERT_ENV),
        help=f"the oracle's TLS certificate (default: ${ORACLE_CERT_ENV}, else the one logged on the search run)",
    )
    p.add_argument(
        "--oracle-cert-sha256",
        metavar="HEX",
        default=os.environ.get(ORACLE_CERT_SHA256_ENV),
        help=f"refuse an oracle certificate with another SHA-256 (default: ${ORACLE_CERT_SHA256_ENV}; the search "
        "prints it in the agent command)",
    )
    return p


def joined_search(search_run_id: str, tracking_uri: str | None, cert_file: str | None = None, pin: str | None = None):
    """(validated config, oracle address, `oracle_access.Tls` or None) of a running search, or a
    SweeplabError saying why not. `pin`: the SHA-256 (hex) the oracle's certificate must have."""
    import tempfile

    from omegaconf import OmegaConf

    from sweeplab.config.validation import validate
    from sweeplab.errors import TrackingError
    from sweeplab.tracking.store import display_uri, open_run
    from sweeplab.tracking.tags import ORACLE, ORACLE_CERT, ROLE

    client, uri, run = open_run(tracking_uri, search_run_id)
    if run.data.tags.get(ROLE) != "search":
        raise TrackingError(
            f"run {search_run_id}: not a sweeplab search run (tag {ROLE} is "
            f"{run.data.tags.get(ROLE)!r}); pass the search's run id"
        )
    if run.info.status != "RUNNING":
        raise TrackingError(f"search run {search_run_id} is {run.info.status}: nothing left to train")
    address = run.data.tags.get(ORACLE)
    if not address:
        raise TrackingError(
            f"search run {search_run_id} serves no oracle: start it with tuner.workers=0 (or > 1) for agents to join"
        )
    with tempfile.TemporaryDirectory() as tmp:
        raw = OmegaConf.load(client.download_artifacts(search_run_id, "config.yaml", tmp))
        configured_tls = bool(raw.tuner.oracle.tls_cert)
        # The chief's certificate and key files are on its machine; the agent needs neither.
        raw.tuner.oracle.tls_cert = raw.tuner.oracle.tls_key = None
        cfg = validate(raw)
        tls = _oracle_tls(client, run, cert_file, tmp)
    if tls is None and (configured_tls or pin):
        raise TrackingError(
            f"search run {search_run_id} says its oracle serves no TLS (tag {ORACLE_CERT}), but "
            f"{'this agent pins a certificate' if pin else 'its config sets tuner.oracle.tls_cert'}: "
            "refusing to send the token in clear (was the run edited?)"
        )
    if pin:
        _check_pin(tls.cert, pin, cert_file or f"the certificate logged on search run {search_run_id}")
    # The logged config holds the store's URI with its password masked: use the agent's own.
    cfg.tracking.uri = uri
    print(
        f"[sweeplab] agent joining search {run.info.run_name} ({search_run_id}) in {display_uri(uri)}, "
        f"oracle {address}{' (TLS)' if tls else ''}",
        flush=True,
    )
    return cfg, address, tls


def _oracle_tls(client, run, cert_file: str | None, tmp: str):
    """The certificate the agent trusts: `cert_file`, else the search run's while its oracle serves TLS."""
    from sweeplab.errors import TrackingError
    from sweeplab.search.oracle_access import Tls
    from sweeplab.tracking.tags import ORACLE_CERT

    if cert_file:
        try:
            return Tls(open(cert_file, "rb").read())
        except OSError as err:
            raise TrackingError(f"--oracle-cert {cert_file}: {err.strerror}") from None
    artifact = run.data.tags.get(ORACLE_CERT, "none")
    if artifact == "none":
        return None
    with open(client.download_artifacts(run.info.run_id, artifact, tmp), "rb") as cert:
        return Tls(cert.read())


def _check_pin(cert: bytes, pin: str, source: str) -> None:
    from sweeplab.errors import TrackingError
    from sweeplab.search.oracle_access import cert_sha256

    expected = pin.replace(":", "").lower()
    if cert_sha256(cert) != expected:
        raise TrackingError(
            f"{source}: its SHA-256 is {cert_sha256(cert) or 'none (not a certificate)'}, not the "
            f"pinned {expected} (--oracle-cert-sha256): refusing to send the token to that oracle"
        )


@command_boundary()
def main(argv: list[str] | None = None, prog: str = "python -m sweeplab.agent") -> int:
    args = parser(prog).parse_args(argv)
    token = os.environ.get(ORACLE_TOKEN_ENV)
    if not token:
        raise SweeplabError(
            f"set {ORACLE_TOKEN_ENV} to the search's oracle token (the search printed the command that does)"
        )
    cfg, address, tls = joined_search(args.search_run_id, args.tracking_uri, args.oracle_cert, args.oracle_cert_sha256)
    from sweeplab.search.worker import new_tuner_id, train_trials

    # A launcher's agent (tuner.launcher=ray|slurm) is named by where it runs: its trial runs' sweeplab.worker
    # tag is `<name>-<hex>@<host>:<pid>`, of which the chief's hand-over reads the part before `@`.
    name = os.environ.get(AGENT_NAME_ENV) or "agent"
    return train_trials(cfg, args.search_run_id, address, token, new_tuner_id(name), name=name, tls=tls)


if __name__ == "__main__":
    sys.exit(main())
