"""The chief of a search trained by other processes: local workers
(`tuner.workers` > 1) and agents on any machine (`python -m sweeplab.agent`;
`tuner.workers=0` leaves every trial to them).

Keras Tuner's distributed mode: this process keeps the oracle (which trial
comes next, every result) and serves it over gRPC at `tuner.oracle.host` and
`.port`, recorded on the search run (tag `sweeplab.oracle`) for agents to find.
Each worker or agent asks it for trials, trains them and logs them under the
search's MLflow run. A worker or agent that stops answering for
`tuner.oracle.lease_s` has lost its trial: its run ends FAILED ("agent lost")
and the trial goes to the next one that asks (Keras Tuner would keep it
running forever). With `tuner.oracle.tls_cert` and `.tls_key` the oracle
serves TLS and logs its certificate on the search run for agents.

The serving loop is ours, not `oracle_chief.start_server`: that one polls every
20 s for the last trials to end, which would dominate a short search.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import time
from concurrent import futures
from pathlib import Path

from sweeplab.errors import WorkerFailedError

WORKER_PREFIX = "worker"
CONFIG_FILE = "workers-config.yaml"
TOKEN_FILE = "oracle.token"
# The oracle's TLS certificate on the search run, where agents find it (it is public).
CERT_ARTIFACT = "oracle-cert.pem"
ENV_PARENT = "SWEEPLAB_PARENT_RUN_ID"
ENV_WORKERS = "SWEEPLAB_WORKERS"
ENV_TRACKING_URI = "SWEEPLAB_TRACKING_URI"
# The name the oracle's certificate carries, for local workers that connect by 127.0.0.1.
ENV_ORACLE_NAME = "SWEEPLAB_ORACLE_NAME"
_POLL_S = 0.2
_STORE_TRIES = 3  # a hand-over's look-up of the lost runs, before it goes on without


def serve(tuner, cfg, search_run, project_dir: Path) -> None:
    """Serve `tuner`'s oracle to the search's local workers and to agents until every trial is done."""
    from omegaconf import OmegaConf

    from sweeplab.search import launchers
    from sweeplab.search.oracle_access import Access, search_token
    from sweeplab.tracking.store import redact

    oracle_cfg, workers = cfg.tuner.oracle, cfg.tuner.workers
    token = search_token(oracle_cfg.host)
    project_dir.mkdir(parents=True, exist_ok=True)
    config_file = project_dir / CONFIG_FILE
    # No secret on disk: workers get the store's URI and the oracle's token from their environment.
    config_file.write_text(redact(OmegaConf.to_yaml(OmegaConf.create(cfg.resolved))))
    tuner.save()

    access = Access(token)
    server, servicer, port = _start_server(tuner.oracle, oracle_cfg, access, workers)
    address = f"{_advertised(oracle_cfg.host)}:{port}"
    _publish(search_run, oracle_cfg, address)
    print(f"[sweeplab] oracle of this search at {address}; {_workers(cfg)}", flush=True)
    joining = agent_command(search_run, cfg, token, project_dir)
    print(f"[sweeplab] agents join from any machine with:\n  {joining}", flush=True)

    launcher, agents = launchers.for_config(cfg), []
    try:
        env = _worker_env(cfg, search_run, token, address, port)
        placement = launchers.Placement(cfg, search_run.run_id, config_file, env, project_dir)
        agents = launcher.start(placement, workers)
        _serve_until_done(tuner.oracle, servicer, agents, access, search_run, cfg)
        codes = [agent.wait() for agent in agents]
    except BaseException:
        launcher.stop(agents)
        raise
    finally:
        launcher.close()
        server.stop(grace=None)
        tuner.save()
    _check_exits(codes)


def _workers(cfg) -> str:
    launcher = cfg.tuner.launcher.value
    if launcher == "local":
        return f"{cfg.tuner.workers} local worker(s)"
    return f"{cfg.tuner.workers} agent(s) started by tuner.launcher={launcher}"


def _serve_until_done(oracle, servicer, procs: list, access, search_run, cfg) -> None:
    """Hands over lost tuners' trials until the search is done, with one status line (agents
    connected, trials running, finished, failed) that says where it stands."""
    from sweeplab.search import chief_status

    workers, lease_s = cfg.tuner.workers, cfg.tuner.oracle.lease_s
    # Local workers print to this terminal too: a line redrawn in place would run into theirs.
    status = chief_status.StatusLine(in_place=sys.stdout.isatty() and workers == 0)
    try:
        while True:
            done = _done(oracle, servicer, procs, access)
            status.show(chief_status.describe(chief_status.counts(oracle, access, lease_s), workers))
            if done:  # counted after: the last line has the final counts
                return
            time.sleep(_POLL_S)
            reap(oracle, access, search_run, lease_s)
    finally:
        status.close()


def _check_exits(codes: list[int]) -> None:
    """KeyboardInterrupt if a local worker was interrupted, WorkerFailedError if one failed."""
    if any(code in (130, -signal.SIGINT) for code in codes):
        # Ctrl-C in a terminal reaches the whole process group; this process may have missed it.
        raise KeyboardInterrupt
    failed = [(f"{WORKER_PREFIX}{i}", code) for i, code in enumerate(codes) if code != 0]
    if failed:
        raise WorkerFailedError(
            ", ".join(f"{name} exited with {code}" for name, code in failed) + " (its output is above)"
        )


def _start_server(oracle, oracle_cfg, access, workers: int):
    """(server, servicer, port): the oracle served at tuner.oracle.host and .port, over TLS
    with tuner.oracle.tls_cert and .tls_key."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    from sweeplab.errors import ConfigError

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers + 8), interceptors=[access])
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    listen = f"{oracle_cfg.host}:{oracle_cfg.port}"
    # Port 0: the system picks a free port and gRPC reports it (no window for another process to take it).
    try:
        if oracle_cfg.tls_cert:
            pair = (Path(oracle_cfg.tls_key).read_bytes(), Path(oracle_cfg.tls_cert).read_bytes())
            port = server.add_secure_port(listen, grpc.ssl_server_credentials([pair]))
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:
        port = 0
    if not port:
        raise ConfigError("tuner.oracle.port", oracle_cfg.port, f"a port free on {oracle_cfg.host} (0: any free port)")
    server.start()
    return server, servicer, port


def _publish(search_run, oracle_cfg, address: str) -> None:
    """The oracle's address (and certificate) on the search run, for agents; a warning when
    its calls cross the network in clear."""
    from sweeplab.net import is_loopback
    from sweeplab.tracking.tags import ORACLE, ORACLE_CERT

    client = search_run.client
    # The certificate first: an agent that finds the address finds how to trust it.
    if oracle_cfg.tls_cert:
        client.log_text(search_run.run_id, Path(oracle_cfg.tls_cert).read_text(), CERT_ARTIFACT)
        client.set_tag(search_run.run_id, ORACLE_CERT, CERT_ARTIFACT)
        client.set_tag(search_run.run_id, ORACLE, address)
        print(
            f"[sweeplab] oracle calls use TLS; agents read its certificate from the search run ({CERT_ARTIFACT})",
            flush=True,
        )
        return
    client.set_tag(search_run.run_id, ORACLE_CERT, "none")
    client.set_tag(search_run.run_id, ORACLE, address)
    if not is_loopback(oracle_cfg.host):
        print(
            f"[sweeplab] WARNING: the oracle at {address} is not encrypted: the oracle token and every trial "
            "cross the network in clear; set tuner.oracle.tls_cert and tuner.oracle.tls_key",
            flush=True,
        )


def _worker_env(cfg, search_run, token: str, address: str, port: int) -> dict:
    """The environment of a local worker: where the oracle and the store are, and their secrets."""
    from sweeplab.config.schema import ORACLE_CERT_ENV, ORACLE_CERT_SHA256_ENV
    from sweeplab.search.oracle_access import ENV_TOKEN
    from sweeplab.tracking.store import resolve_uri

    oracle_cfg = cfg.tuner.oracle
    host = address.rsplit(":", 1)[0]
    # A certificate exported for agents must not make a worker of an oracle in clear try TLS.
    tls_vars = (ORACLE_CERT_ENV, ORACLE_CERT_SHA256_ENV, ENV_ORACLE_NAME)
    env = {
        **{k: v for k, v in os.environ.items() if k not in tls_vars},
        "KERASTUNER_ORACLE_IP": "127.0.0.1" if _listens_on_loopback(oracle_cfg.host) else host,
        "KERASTUNER_ORACLE_PORT": str(port),
        ENV_PARENT: search_run.run_id,
        ENV_WORKERS: str(cfg.tuner.workers),
        ENV_TRACKING_URI: resolve_uri(cfg.tracking.uri),
        ENV_TOKEN: token,
    }
    if oracle_cfg.tls_cert:
        env.update({ORACLE_CERT_ENV: str(Path(oracle_cfg.tls_cert).resolve()), ENV_ORACLE_NAME: host})
    return env


def agent_command(search_run, cfg, token: str, project_dir: Path) -> str:
    """The command that joins this search from another machine (or this one)."""
    from sweeplab.search.oracle_access import ENV_TOKEN, cert_sha256
    from sweeplab.tracking.store import display_uri, resolve_uri

    if os.environ.get(ENV_TOKEN):
        token_part = f"{ENV_TOKEN}=<the team's shared token>"
    else:
        # A fresh secret on loopback: only processes of this user on this machine can read it.
        token_file = project_dir / TOKEN_FILE
        write_private(token_file, token)
        token_part = f'{ENV_TOKEN}="$(cat {shlex.quote(str(token_file.resolve()))})"'
    uri = display_uri(resolve_uri(cfg.tracking.uri))
    command = f"{token_part} python -m sweeplab.agent {search_run.run_id} --tracking-uri {shlex.quote(uri)}"
    if cfg.tuner.oracle.tls_cert:
        # Pinned: whoever may edit the search run cannot swap the certificate agents trust.
        command += f" --oracle-cert-sha256 {cert_sha256(Path(cfg.tuner.oracle.tls_cert).read_bytes())}"
    return command


def write_private(path: Path, text: str) -> None:
    """`text` in a file only this user can read, from its creation on (no moment readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, 0o600)  # a file that already existed keeps its mode on open
        out.write(text)


def _advertised(host: str) -> str:
    """The address agents connect to: the host, or this machine's name when it listens on every address."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host


def _listens_on_loopback(host: str) -> bool:
    from sweeplab.net import is_loopback

    return is_loopback(host) or host in ("0.0.0.0", "::", "")


def _done(oracle, servicer, procs: list, access) -> bool:
    """No trial left to hand out or running, and every tuner that asked has been told to stop;
    or no one left to train (every local worker gone, and no agent heard from)."""
    # A trial handed back (a lost agent's) must still go out, even once some slot was told to stop.
    no_more = not oracle._retry_queue and (
        servicer.stop_triggered or (bool(oracle.max_trials) and len(oracle.trials) >= oracle.max_trials)
    )
    if no_more and not oracle.ongoing_trials and not oracle.tuner_ids:
        return all(proc.poll() is not None for proc in procs)
    return bool(procs) and all(proc.poll() is not None for proc in procs) and not access.last_seen


def reap(oracle, access, search_run, lease_s: float) -> None:
    """Hands over the trials of tuners silent for the lease, and again those of every tuner whose
    lease expired: a call that passed the gate just before may run after its hand-over."""
    access.silent_for(lease_s)
    for tuner_id in list(access.expired):
        _hand_over(oracle, tuner_id, search_run, lease_s)


def _hand_over(oracle, tuner_id: str, search_run, lease_s: float) -> None:
    """A worker or agent lost (no call or heartbeat for the lease): its trial goes back in the
    queue, first served to the next one that asks (a try, counted against tuner.max_retries_per_trial:
    past it the trial ends FAILED), and its runs end FAILED. Nothing to do (and no store call) for a
    tuner that holds nothing."""
    from keras_tuner.src.engine import oracle as oracle_module

    from sweeplab.errors import short_reason
    from sweeplab.search import retries
    from sweeplab.tracking.tags import WORKER

    def its_own(key: str) -> bool:  # the tuner's id, or one of its pack's slots (tuner.pack)
        return key == tuner_id or key.startswith(f"{tuner_id}-pack")

    with oracle_module.LOCKS[oracle]:  # the oracle's own lock: gRPC threads are using it
        lost = [oracle.ongoing_trials.pop(key) for key in [k for k in oracle.ongoing_trials if its_own(k)]]
        for key in [k for k in oracle.tuner_ids if its_own(k)]:
            oracle.tuner_ids.discard(key)
        reason = f"agent lost: {tuner_id} stopped answering for {lease_s:g} s"
        requeued = retries.hand_over(oracle, lost, reason)
        if lost:
            oracle.save()
    if not lost:
        return
    for trial in lost:
        again = "the trial goes to another" if trial in requeued else "no retry left (tuner.max_retries_per_trial)"
        print(f"[sweeplab] trial {trial.trial_id}: {reason}; {again}", flush=True)
    reason = f"{reason}; the trial goes to another" if requeued else reason

    def owned(run) -> bool:  # tag sweeplab.worker is `<tuner id>@host:pid`; another's run of the trial goes on
        return run.data.tags.get(WORKER, "").partition("@")[0] == tuner_id

    for attempt in range(_STORE_TRIES):
        try:
            return search_run.fail_running_trials(reason, owned)
        except Exception as err:  # the store: MlflowException, or its database's own errors
            trouble = f"{type(err).__name__}: {err}"
            if attempt + 1 < _STORE_TRIES:
                time.sleep(attempt + 1)
    print(
        f"[sweeplab] could not mark {tuner_id}'s runs FAILED ({short_reason(trouble)}); the search goes on "
        "(a resumed search marks them)",
        flush=True,
    )
