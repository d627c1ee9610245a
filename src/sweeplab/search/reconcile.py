"""The oracle and the MLflow store made to agree on which trials are done, so that no trial is
trained or recorded twice.

A trial's run ends FINISHED only once its whole record has landed (tag `sweeplab.recorded`) and
the oracle has taken its result. A process lost between the two (a chief killed while an agent
reported, a worker killed right after reporting) leaves a recorded run that did not end
FINISHED: its result is taken from that record, not trained again.
"""

from __future__ import annotations

import math

from keras_tuner.src.engine.trial import TrialStatus

from sweeplab.tracking import metric_names
from sweeplab.tracking.queries import trial_runs
from sweeplab.tracking.tags import FAILURE, RECONCILED, RECORDED, TRIAL_ID


def accept_recorded(tuner) -> list[str]:
    """Every trial of `tuner`'s search with a recorded run and no FINISHED one: the oracle takes its
    result from the run's record if it never ended the trial (a chief lost before it heard), and
    the run ends FINISHED. Returns those trials' ids."""
    search = tuner.search_run
    client, oracle = search.client, tuner.oracle
    finished = {run.data.tags.get(TRIAL_ID) for run in trial_runs(client, search.experiment_id, search.run_id)}
    accepted = []
    for run in _recorded_unfinished(client, search.experiment_id, search.run_id):
        trial_id = run.data.tags.get(TRIAL_ID)
        trial = oracle.trials.get(trial_id)
        if trial_id in finished or trial is None:
            continue
        score = run.data.metrics.get(metric_names.scored(oracle.objective.name))
        if score is None or not math.isfinite(score):
            continue
        if trial.status == TrialStatus.RUNNING:  # handed out, never ended: its result is in the record
            _complete(oracle, trial, score)
            if trial.status != TrialStatus.COMPLETED:
                continue
            how = "its result was taken from this run's record when the search resumed (not trained again)"
        elif trial.status == TrialStatus.COMPLETED and trial.score is not None and math.isclose(score, trial.score):
            how = "the search had taken its result; its run ended FINISHED when the search resumed"
        else:  # failed, or completed from another run's training (that one is recorded again)
            continue
        if FAILURE in run.data.tags:
            client.delete_tag(run.info.run_id, FAILURE)
        client.set_tag(run.info.run_id, RECONCILED, how)
        client.set_terminated(run.info.run_id, "FINISHED")
        finished.add(trial_id)
        accepted.append(trial_id)
        print(f"[sweeplab] trial {trial_id}: trained and recorded in run {run.info.run_id}; {how}", flush=True)
    return accepted


def _recorded_unfinished(client, experiment_id: str, search_run_id: str) -> list:
    """The search's trial runs with a complete record that did not end FINISHED."""
    where = f"tags.`{RECORDED}` = 'true' and attributes.status != 'FINISHED'"
    return trial_runs(client, experiment_id, search_run_id, status=None, where=where)


def _complete(oracle, trial, score: float) -> None:
    """End `trial` COMPLETED with `score`, as if its trainer had reported it."""
    if trial.trial_id in oracle._retry_queue:  # a reloaded oracle queues the trials it handed out
        oracle._retry_queue.remove(trial.trial_id)
    oracle.update_trial(trial.trial_id, {oracle.objective.name: score})
    trial.status = TrialStatus.COMPLETED
    # Keras Tuner's display times a trial from its start in this process (KeyError otherwise); ours says it.
    verbose, oracle.verbose = oracle.verbose, 0
    try:
        oracle.end_trial(trial)
    finally:
        oracle.verbose = verbose
