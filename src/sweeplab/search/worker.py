"""A trial worker of one search (`tuner.workers`): `python -m sweeplab.search.worker
CONFIG_FILE`, started by the search's chief (`chief.py`). It asks the chief's
oracle for trials, trains them and logs them under the search's MLflow run
until the oracle says stop.
"""

from __future__ import annotations

import os
import signal
import sys

from sweeplab.search.chief import ENV_PARENT, ENV_TRACKING_URI, ENV_WORKERS


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
    """One worker: trials from the oracle until it says stop."""
    _die_with_parent()
    from omegaconf import OmegaConf

    from sweeplab.search.tensorflow_import import import_tensorflow_quietly

    import_tensorflow_quietly()

    from sweeplab.config.validation import validate
    from sweeplab.search import tuning
    from sweeplab.search.preparation import prepare, tuner_location
    from sweeplab.tracking.runs import SearchRun
    from sweeplab.tracking.store import connect

    from sweeplab.search.oracle_auth import ENV_TOKEN, send_token_from_keras_tuner

    cfg = validate(OmegaConf.load(config_file))
    # The config file holds the store's URI with its password masked; the real one comes by the environment.
    cfg.tracking.uri = os.environ[ENV_TRACKING_URI]
    send_token_from_keras_tuner(os.environ[ENV_TOKEN])
    _use_my_share_of_cores()
    dataset, family = prepare(cfg, quiet=True)
    client, _uri, experiment_id = connect(cfg.tracking)
    search_run = SearchRun.attach(client, experiment_id, os.environ[ENV_PARENT])
    hypermodel = tuning.SweepHyperModel(family, cfg, dataset)
    directory, project = tuner_location(cfg)
    worker = os.environ["KERASTUNER_TUNER_ID"]
    # The search already started over if it had to; a worker never wipes its state.
    tuner = tuning.make_tuner(cfg, hypermodel, search_run, dataset, directory, project, worker=worker)
    try:
        tuning.search(tuner, cfg, dataset)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
