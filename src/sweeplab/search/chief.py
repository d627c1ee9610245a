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
running forever).

The serving loop is ours, not `oracle_chief.start_server`: that one polls every
20 s for the last trials to end, which would dominate a short search.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

WORKER_PREFIX = "worker"
CONFIG_FILE = "workers-config.yaml"
TOKEN_FILE = "oracle.token"
ENV_PARENT = "SWEEPLAB_PARENT_RUN_ID"
ENV_WORKERS = "SWEEPLAB_WORKERS"
ENV_TRACKING_URI = "SWEEPLAB_TRACKING_URI"
_INTERRUPT_GRACE_S = 60
_POLL_S = 0.2
_REMIND_S = 60  # how often a search that no one trains says so


class WorkerFailedError(RuntimeError):
    pass


def serve(tuner, cfg, search_run, project_dir: Path) -> None:
    """Serve `tuner`'s oracle to the search's local workers and to agents until every trial is done."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer
    from omegaconf import OmegaConf

    from sweeplab.errors import ConfigError
    from sweeplab.search.oracle_access import ENV_TOKEN, Access, search_token
    from sweeplab.tracking.store import redact, resolve_uri
    from sweeplab.tracking.tags import ORACLE

    oracle_cfg, workers = cfg.tuner.oracle, cfg.tuner.workers
    token = search_token(oracle_cfg.host)
    project_dir.mkdir(parents=True, exist_ok=True)
    config_file = project_dir / CONFIG_FILE
    # No secret on disk: workers get the store's URI and the oracle's token from their environment.
    config_file.write_text(redact(OmegaConf.to_yaml(OmegaConf.create(cfg.resolved))))
    tuner.save()

    access = Access(token)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers + 8), interceptors=[access])
    servicer = OracleServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    # Port 0: the system picks a free port and gRPC reports it (no window for another process to take it).
    try:
        port = server.add_insecure_port(f"{oracle_cfg.host}:{oracle_cfg.port}")
    except RuntimeError:
        port = 0
    if not port:
        raise ConfigError("tuner.oracle.port", oracle_cfg.port, f"a port free on {oracle_cfg.host} (0: any free port)")
    server.start()
    address = f"{_advertised(oracle_cfg.host)}:{port}"
    search_run.client.set_tag(search_run.run_id, ORACLE, address)
    print(f"[sweeplab] oracle of this search at {address}; {workers} local worker(s)", flush=True)
    joining = agent_command(search_run, cfg, token, project_dir)
    print(f"[sweeplab] agents join from any machine with:\n  {joining}", flush=True)

    procs = []
    try:
        for index in range(workers):
            env = {
                **os.environ,
                "KERASTUNER_ORACLE_IP": "127.0.0.1" if _listens_on_loopback(oracle_cfg.host) else address.split(":")[0],
                "KERASTUNER_ORACLE_PORT": str(port),
                "KERASTUNER_TUNER_ID": f"{WORKER_PREFIX}{index}",
                ENV_PARENT: search_run.run_id,
                ENV_WORKERS: str(workers),
                ENV_TRACKING_URI: resolve_uri(cfg.tracking.uri),
                ENV_TOKEN: token,
            }
            procs.append(subprocess.Popen([sys.executable, "-m", "sweeplab.search.worker", str(config_file)], env=env))
        reminded = time.monotonic()
        while not _done(tuner.oracle, servicer, procs, access):
            time.sleep(_POLL_S)
            for tuner_id in access.silent_for(oracle_cfg.lease_s):
                _hand_over(tuner.oracle, tuner_id, search_run, oracle_cfg.lease_s)
            if not access.last_seen and time.monotonic() - reminded > _REMIND_S:
                print(f"[sweeplab] waiting for agents (none is training); join with:\n  {joining}", flush=True)
                reminded = time.monotonic()
        codes = [proc.wait() for proc in procs]
    except BaseException:
        _stop(procs)
        raise
    finally:
        server.stop(grace=None)
        tuner.save()
    if any(code in (130, -signal.SIGINT) for code in codes):
        # Ctrl-C in a terminal reaches the whole process group; this process may have missed it.
        raise KeyboardInterrupt
    failed = [(f"{WORKER_PREFIX}{i}", code) for i, code in enumerate(codes) if code != 0]
    if failed:
        raise WorkerFailedError(
            ", ".join(f"{name} exited with {code}" for name, code in failed) + " (its output is above)"
        )


def agent_command(search_run, cfg, token: str, project_dir: Path) -> str:
    """The command that joins this search from another machine (or this one)."""
    from sweeplab.search.oracle_access import ENV_TOKEN
    from sweeplab.tracking.store import display_uri, resolve_uri

    if os.environ.get(ENV_TOKEN):
        token_part = f"{ENV_TOKEN}=<the team's shared token>"
    else:
        # A fresh secret on loopback: only processes of this user on this machine can read it.
        token_file = project_dir / TOKEN_FILE
        token_file.write_text(token)
        token_file.chmod(0o600)
        token_part = f'{ENV_TOKEN}="$(cat {shlex.quote(str(token_file.resolve()))})"'
    uri = display_uri(resolve_uri(cfg.tracking.uri))
    return f"{token_part} python -m sweeplab.agent {search_run.run_id} --tracking-uri {shlex.quote(uri)}"


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


def _hand_over(oracle, tuner_id: str, search_run, lease_s: float) -> None:
    """A worker or agent lost (no call or heartbeat for the lease): its trial's run ends FAILED
    and the trial goes back in the queue, first served to the next one that asks."""
    from keras_tuner.src.engine import oracle as oracle_module

    from sweeplab.tracking.queries import trial_runs
    from sweeplab.tracking.tags import FAILURE, TRIAL_ID

    def its_own(key: str) -> bool:  # the tuner's id, or one of its pack's slots (tuner.pack)
        return key == tuner_id or key.startswith(f"{tuner_id}-pack")

    with oracle_module.LOCKS[oracle]:  # the oracle's own lock: gRPC threads are using it
        lost = [oracle.ongoing_trials.pop(key) for key in [k for k in oracle.ongoing_trials if its_own(k)]]
        for key in [k for k in oracle.tuner_ids if its_own(k)]:
            oracle.tuner_ids.discard(key)
        oracle._retry_queue.extend(trial.trial_id for trial in lost)
        if lost:
            oracle.save()
    if not lost:
        return
    reason = f"agent lost: {tuner_id} stopped answering for {lease_s:g} s; the trial goes to another"
    lost_ids = {trial.trial_id for trial in lost}
    print(f"[sweeplab] trial(s) {', '.join(sorted(lost_ids))}: {reason}", flush=True)
    client = search_run.client
    for run in trial_runs(client, search_run.experiment_id, search_run.run_id, status="RUNNING"):
        if run.data.tags.get(TRIAL_ID) in lost_ids:
            client.set_tag(run.info.run_id, FAILURE, reason)
            client.set_terminated(run.info.run_id, "FAILED")


def _stop(procs: list[subprocess.Popen]) -> None:
    """Ctrl-C reached the workers too (one process group): let them mark their runs KILLED."""
    deadline = time.monotonic() + 5
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=_INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
