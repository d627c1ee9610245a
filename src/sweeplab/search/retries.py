"""Retries (`tuner.max_retries_per_trial`): a trial that failed for a reason outside its config is
trained again, up to the limit; one whose config is at fault is not.

Keras Tuner's own rule decides which: a trial that ends INVALID (an exception in training, such as
an out-of-memory error, or a store that failed) is retried, one that ends FAILED (a NaN loss, a
model that cannot be built: `FailedTrialError`) is not. Two additions here:
- a model outside tuner.constraints ends INVALID (it is no failure of the search's) but is never
  retried: it would be as large again. The trainer says so with the metric INFEASIBLE_METRIC,
  since a trial's message does not travel to the chief over gRPC and its metrics do;
- a trial handed over from a lost worker or agent counts as a try (`hand_over`): one that loses
  its agent every time (it kills the process) ends FAILED at the limit instead of going round;
- a tuner that asks once every trial has been handed out waits (IDLE) while trials still run
  elsewhere, instead of being told the search is over (Keras Tuner's STOPPED, on which it exits):
  the trial of a worker lost later needs someone left to train it again.
A retried trial's epochs start afresh, and its new run names the last one (tag `sweeplab.retry_of`).
"""

from __future__ import annotations

import keras_tuner as kt
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine.metrics_tracking import MetricsTracker

INFEASIBLE_METRIC = "sweeplab_infeasible"


class RetryingOracle:
    """Mixin for the search's Keras Tuner oracle (see the module doc)."""

    @kt.synchronized
    def create_trial(self, tuner_id):
        retried = self._retry_queue[-1] if self._retry_queue else None
        trial = super().create_trial(tuner_id)
        if trial.status == trial_module.TrialStatus.STOPPED and self.max_retries_per_trial and self.ongoing_trials:
            self.tuner_ids.add(tuner_id)  # Keras Tuner let it go with STOPPED: it stays, waiting
            trial.status = trial_module.TrialStatus.IDLE
            return trial
        if trial.trial_id == retried:
            # A retry trains afresh: its earlier attempt's epochs must not mix with this one's.
            trial.metrics = MetricsTracker()
            getattr(self, "pruned", {}).pop(trial.trial_id, None)
            self._save_trial(trial)
        return trial

    def _retry(self, trial):
        if trial.metrics.exists(INFEASIBLE_METRIC):
            return False
        return super()._retry(trial)


def retry(oracle) -> None:
    """Make `oracle` (the search's own, not a worker's client) retry as the module doc says."""
    if isinstance(oracle, kt.Oracle) and not isinstance(oracle, RetryingOracle):
        oracle.__class__ = type(f"Retrying{type(oracle).__name__}", (RetryingOracle, type(oracle)), {})


def say_infeasible(oracle, trial_id: str) -> None:
    """Tell the oracle (over gRPC for a worker) that the trial's model is outside tuner.constraints."""
    oracle.update_trial(trial_id, {oracle.objective.name: float("nan"), INFEASIBLE_METRIC: 1.0}, step=0)


def hand_over(oracle, trials: list, reason: str) -> list:
    """Under the oracle's lock: `trials` of a lost worker or agent go back in the queue, each counted
    as a try; those past tuner.max_retries_per_trial end FAILED with `reason`. Returns those requeued."""
    requeued = []
    for trial in trials:
        oracle._run_times[trial.trial_id] += 1
        if oracle._run_times[trial.trial_id] <= oracle.max_retries_per_trial:
            requeued.append(trial)
            continue
        trial.status, trial.message = trial_module.TrialStatus.FAILED, reason
        oracle.end_order.append(trial.trial_id)
        oracle._save_trial(trial)
    oracle._retry_queue.extend(trial.trial_id for trial in requeued)
    return requeued
