"""A process that trains trials of a search served by its chief (`chief.py`):
a local worker (`python -m sweeplab.search.worker CONFIG_FILE`, started by the
chief for `tuner.workers` > 1) or an agent (`python -m sweeplab.agent`, started
by anyone, anywhere). Both ask the oracle for trials, train them and log them
under the search's MLflow run until the oracle says stop.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from sweeplab.search.chief import ENV_PARENT, ENV_TRACKING_URI, ENV_WORKERS

# Exit status of a worker or agent that lost its oracle (chief gone, or its lease expired).
EXIT_ORACLE_LOST = 3


def train_trials(cfg, search_run_id: str, oracle_address: str, token: str, tuner_id: str, name: str) -> int:
    """Trials from the oracle at `oracle_address` until it says stop: 0, or 130 after Ctrl-C.

    `name` (worker0, agent...) goes with this host and process id in each trial
    run's `sweeplab.worker` tag.
    """
    from sweeplab.search.tensorflow_import import import_tensorflow_quietly

    import_tensorflow_quietly()  # before Keras (and so TensorFlow) is imported below
    import grpc
    from sweeplab.search import tuning
    from sweeplab.search.oracle_access import heartbeat, identify_keras_tuner_clients, oracle_trouble
    from sweeplab.search.preparation import prepare, tuner_location
    from sweeplab.tracking import writer
    from sweeplab.tracking.runs import SearchRun
    from sweeplab.tracking.store import connect

    host, port = oracle_address.rsplit(":", 1)
    # Keras Tuner's distributed mode reads these; a tuner id with "chief" in it would take the chief's part.
    os.environ.update(KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=port, KERASTUNER_TUNER_ID=tuner_id)
    oracle_cfg = cfg.tuner.oracle
    identify_keras_tuner_clients(token, tuner_id, wait_s=oracle_cfg.wait_s)
    dataset, family = prepare(cfg, quiet=True)
    client, _uri, experiment_id = connect(cfg.tracking)
    search_run = SearchRun.attach(client, experiment_id, search_run_id)
    hypermodel = tuning.SweepHyperModel(family, cfg, dataset)
    directory, project = tuner_location(cfg)
    tag = f"{name}@{socket.gethostname()}:{os.getpid()}"
    # The search already started over if it had to; a worker never wipes its state.
    try:
        tuner = tuning.make_tuner(cfg, hypermodel, search_run, dataset, directory, project, worker=tag)
    except grpc.RpcError as err:  # Keras Tuner asks the oracle for the search space
        print(f"[sweeplab] {tag}: {oracle_trouble(err, oracle_address, oracle_cfg.wait_s)}", file=sys.stderr,
              flush=True)
        return EXIT_ORACLE_LOST

    def lost(reason: str) -> None:
        """The chief is gone or handed our trial to another: fail the trial's run, stop now."""
        print(f"[sweeplab] {tag}: {reason}; stopping (the trial it was training will be retried)",
              file=sys.stderr, flush=True)
        tuner.abandon_trial(reason)
        writer.wait_for_writes(timeout_s=10)  # finished trials' records, if the store answers
        os._exit(EXIT_ORACLE_LOST)

    heartbeat(oracle_address, token, tuner_id, every_s=oracle_cfg.lease_s / 6, give_up_s=oracle_cfg.wait_s,
              on_loss=lost)
    try:
        tuning.search(tuner, cfg, dataset)
    except KeyboardInterrupt:
        return 130
    except grpc.RpcError as err:  # Keras Tuner's own call to the oracle
        lost(oracle_trouble(err, oracle_address, oracle_cfg.wait_s))
    return 0


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

    from sweeplab.config.validation import validate
    from sweeplab.search.oracle_access import ENV_TOKEN
    from sweeplab.search.tensorflow_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    _use_my_share_of_cores()
    cfg = validate(OmegaConf.load(config_file))
    # The config file holds the store's URI with its password masked; the real one comes by the environment.
    cfg.tracking.uri = os.environ[ENV_TRACKING_URI]
    tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    return train_trials(cfg, os.environ[ENV_PARENT], address, os.environ[ENV_TOKEN], tuner_id, name=tuner_id)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
