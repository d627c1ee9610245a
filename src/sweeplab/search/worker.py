"""A process that trains trials of a search served by its chief (`chief.py`):
a local worker (`python -m sweeplab.search.worker CONFIG_FILE`, started by the
chief for `tuner.workers` > 1) or an agent (`python -m sweeplab.agent`, started
by anyone, anywhere). Both ask the oracle for trials, train them and log them
under the search's MLflow run until the oracle says stop. One that lost its
lease (stalled past `tuner.oracle.lease_s`) rejoins under a new tuner id.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
from collections import Counter
from pathlib import Path

from sweeplab.search.chief import ENV_ORACLE_NAME, ENV_PARENT, ENV_TRACKING_URI, ENV_WORKERS

# Exit status of a worker or agent that lost its oracle (chief gone, or it refused this worker).
EXIT_ORACLE_LOST = 3
_REJOIN = object()
_WHY_STOPPED = {0: "the search is done", 130: "interrupted", EXIT_ORACLE_LOST: "its chief is lost"}


def new_tuner_id(name: str) -> str:
    """A tuner id no other process has, even one with the same host name and process id
    (containers); never "chief" (Keras Tuner gives that id the chief's part)."""
    return f"{name}-{secrets.token_hex(3)}"


def train_trials(cfg, search_run_id: str, oracle_address: str, token: str, tuner_id: str, name: str, tls=None) -> int:
    """Trials from the oracle at `oracle_address` until it says stop: 0, or 130 after Ctrl-C.

    `name` (worker0, agent...) starts the tuner id of a rejoin; each trial run's `sweeplab.worker`
    tag is `<tuner id>@<host>:<process id>`. `tls`: an `oracle_access.Tls`, or None (in clear).
    Says which tuner id it asks as, and how many trials each tuner id trained when it stops.
    """
    from sweeplab.search.tensorflow_import import import_tensorflow_quietly

    print(f"[sweeplab] this {'agent' if name == 'agent' else 'worker'} asks for trials as {tuner_id}", flush=True)

    import_tensorflow_quietly()  # before Keras (and so TensorFlow) is imported below
    from sweeplab.search import tuning
    from sweeplab.search.preparation import prepare
    from sweeplab.tracking.runs import SearchRun
    from sweeplab.tracking.store import connect

    dataset, family = prepare(cfg, quiet=True)
    client, _uri, experiment_id = connect(cfg.tracking)
    search_run = SearchRun.attach(client, experiment_id, search_run_id)
    hypermodel = tuning.SweepHyperModel(family, cfg, dataset)
    while True:
        trained = Counter()  # {trial status: how many of its trials ended so}
        outcome = _train_as(tuner_id, cfg, search_run, hypermodel, dataset, oracle_address, token, tls, trained)
        print(stopped(tuner_id, trained, outcome), flush=True)
        if outcome is not _REJOIN:
            return outcome
        tuner_id = new_tuner_id(name)
        print(f"[sweeplab] rejoining the search as {tuner_id}", file=sys.stderr, flush=True)


def stopped(tuner_id: str, trained: Counter, outcome) -> str:
    """The line a tuner id ends with: how many trials it trained (their end reported to the oracle)."""
    count = sum(trained.values())
    line = f"[sweeplab] {tuner_id} stops: trained {count} trial{'' if count == 1 else 's'}"
    if count and count != trained["COMPLETED"]:
        line += f" ({trained['COMPLETED']} completed, {count - trained['COMPLETED']} failed)"
    return f"{line}; {_WHY_STOPPED.get(outcome, 'its lease expired, it rejoins')}"


def _count_trials(tuner, trained: Counter) -> None:
    """Counts in `trained` each trial whose end `tuner` reports to the oracle, packed or not."""
    report = tuner.on_trial_end

    def counted(trial):
        report(trial)
        trained[trial.status] += 1

    tuner.on_trial_end = counted


def _train_as(tuner_id: str, cfg, search_run, hypermodel, dataset, oracle_address: str, token: str, tls, trained):
    """Trials as `tuner_id` until the oracle says stop (0), Ctrl-C (130), the chief is gone
    (the process exits) or its lease expired (_REJOIN); `trained` counts the trials it trains."""
    import grpc

    from sweeplab.search import oracle_access, tuning
    from sweeplab.search.preparation import tuner_location

    host, port = oracle_address.rsplit(":", 1)
    # Keras Tuner's distributed mode reads these; a tuner id with "chief" in it would take the chief's part.
    os.environ.update(KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=port, KERASTUNER_TUNER_ID=tuner_id)
    wait_s = cfg.tuner.oracle.wait_s
    oracle_access.identify_keras_tuner_clients(token, tuner_id, wait_s, tls)
    directory, project = tuner_location(cfg)
    tag = f"{tuner_id}@{socket.gethostname()}:{os.getpid()}"
    # The search already started over if it had to; a worker never wipes its state.
    try:
        tuner = tuning.make_tuner(cfg, hypermodel, search_run, dataset, directory, project, worker=tag)
    except grpc.RpcError as err:  # Keras Tuner asks the oracle for the search space
        print(
            f"[sweeplab] {tag}: {oracle_access.oracle_trouble(err, oracle_address, wait_s)}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_ORACLE_LOST
    _count_trials(tuner, trained)
    lost = _watch_lease(tuner, tag, tuner_id, cfg, oracle_address, token, tls, trained)
    try:
        tuning.search(tuner, cfg, dataset)
    except KeyboardInterrupt:
        return 130
    except grpc.RpcError as err:  # Keras Tuner's own call to the oracle
        if not oracle_access.lease_expired(err):
            lost(oracle_access.oracle_trouble(err, oracle_address, wait_s))
        # The chief failed this tuner's runs and handed its trial on when the lease expired.
        print(
            f"[sweeplab] {tag}: {oracle_access.oracle_trouble(err, oracle_address, wait_s)}",
            file=sys.stderr,
            flush=True,
        )
        return _REJOIN
    return 0


def _watch_lease(tuner, tag: str, tuner_id: str, cfg, oracle_address: str, token: str, tls, trained: Counter):
    """Starts `tuner_id`'s heartbeat; returns what to do when the chief is gone or refused us."""
    from sweeplab.search import oracle_access
    from sweeplab.tracking import writer

    def lost(reason: str) -> None:
        """The chief is gone or refused us: fail the trial's run, stop now."""
        print(
            f"[sweeplab] {tag}: {reason}; stopping (the trial it was training will be retried)",
            file=sys.stderr,
            flush=True,
        )
        tuner.abandon_trial(reason)
        writer.wait_for_writes(timeout_s=10)  # finished trials' records, if the store answers
        if tuner.progress is not None:
            tuner.progress.finish()  # a live bar gives the terminal back before the process ends
        print(stopped(tuner_id, trained, EXIT_ORACLE_LOST), flush=True)
        os._exit(EXIT_ORACLE_LOST)

    def expired() -> None:
        """The chief handed this tuner's trials to another: stop training them now (their runs end
        FAILED), and rejoin once Keras Tuner's next call is refused."""
        tuner.lease_lost = f"the oracle at {oracle_address} refused {tuner_id}: {oracle_access.LEASE_EXPIRED}"
        print(f"[sweeplab] {tag}: {tuner.lease_lost}; stopping its trial", file=sys.stderr, flush=True)

    oracle_access.heartbeat(
        oracle_address,
        token,
        tuner_id,
        every_s=cfg.tuner.oracle.lease_s / 6,
        give_up_s=cfg.tuner.oracle.wait_s,
        on_loss=lost,
        on_expired=expired,
        tls=tls,
    )
    return lost


def _die_with_parent() -> None:
    """A search killed outright (SIGKILL) takes its workers along (Linux); Ctrl-C
    stops a worker like its search even where a shell ignored it for the search."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the search ended before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


def _use_my_share_of_cores() -> None:
    import tensorflow as tf

    threads = max(1, (os.cpu_count() or 1) // int(os.environ.get(ENV_WORKERS, "1")))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def main(config_file: str) -> int:
    """A local worker: its config from the chief's file, the rest from its environment."""
    _die_with_parent()
    from omegaconf import OmegaConf

    from sweeplab.config.schema import ORACLE_CERT_ENV
    from sweeplab.config.validation import validate
    from sweeplab.search import job_lines
    from sweeplab.search.oracle_access import ENV_TOKEN, Tls
    from sweeplab.search.tensorflow_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    _use_my_share_of_cores()
    cfg = validate(OmegaConf.load(config_file))
    # The config file holds the store's URI with its password masked; the real one comes by the environment.
    cfg.tracking.uri = os.environ[ENV_TRACKING_URI]
    tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    cert = os.environ.get(ORACLE_CERT_ENV)
    tls = Tls(Path(cert).read_bytes(), os.environ.get(ENV_ORACLE_NAME)) if cert else None
    with job_lines.from_environment():  # a multirun's job started this search: its lines carry its name
        return train_trials(
            cfg, os.environ[ENV_PARENT], address, os.environ[ENV_TOKEN], tuner_id, name=tuner_id, tls=tls
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
