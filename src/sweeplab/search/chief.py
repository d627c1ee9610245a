"""Several trial workers for one search (`tuner.workers`), on one machine.

Keras Tuner's distributed mode: this process keeps the oracle (which trial
comes next, every result) and serves it over gRPC on 127.0.0.1; each worker
is a `python -m sweeplab.search.worker` process that asks it for trials, trains
them and logs them under the search's MLflow run. A trial is mostly Python
(graph tracing, bookkeeping) on one core, so workers are what uses the others.

The server loop is ours, not `oracle_chief.start_server`: that one polls every
20 s for the last trials to end, which would dominate a short search.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

WORKER_PREFIX = "worker"
CONFIG_FILE = "workers-config.yaml"
ENV_PARENT = "SWEEPLAB_PARENT_RUN_ID"
ENV_WORKERS = "SWEEPLAB_WORKERS"
ENV_TRACKING_URI = "SWEEPLAB_TRACKING_URI"
_INTERRUPT_GRACE_S = 60


class WorkerFailedError(RuntimeError):
    pass


def search(tuner, resolved: dict, parent_run_id: str, workers: int, project_dir: Path) -> None:
    """Serve `tuner`'s oracle to `workers` worker processes until they are done."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer
    from omegaconf import OmegaConf

    from sweeplab.search.oracle_auth import ENV_TOKEN, TokenCheck, search_token
    from sweeplab.tracking.store import redact, resolve_uri

    project_dir.mkdir(parents=True, exist_ok=True)
    config_file = project_dir / CONFIG_FILE
    # No secret on disk: the workers get the store's URI and the oracle's token from their environment.
    config_file.write_text(redact(OmegaConf.to_yaml(OmegaConf.create(resolved))))
    tuner.save()

    token = search_token()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers + 1), interceptors=[TokenCheck(token)])
    protos.get_service_grpc().add_OracleServicer_to_server(OracleServicer(tuner.oracle), server)
    # Port 0: the system picks a free port and gRPC reports it (no window for another process to take it).
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"[sweeplab] {workers} trial workers, oracle on 127.0.0.1:{port}", flush=True)
    procs = []
    try:
        for index in range(workers):
            env = {
                **os.environ,
                "KERASTUNER_ORACLE_IP": "127.0.0.1",
                "KERASTUNER_ORACLE_PORT": str(port),
                "KERASTUNER_TUNER_ID": f"{WORKER_PREFIX}{index}",
                ENV_PARENT: parent_run_id,
                ENV_WORKERS: str(workers),
                ENV_TRACKING_URI: resolve_uri(resolved["tracking"]["uri"]),
                ENV_TOKEN: token,
            }
            procs.append(
                subprocess.Popen([sys.executable, "-m", "sweeplab.search.worker", str(config_file)], env=env)
            )
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
