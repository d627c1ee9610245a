"""Pruning across trials: the oracle answers a trial's intermediate result (Keras Tuner's
`update_trial(trial_id, metrics, step)`) with STOPPED when the trial lags the others.

The decision is the oracle's, from every trial's reported epochs (its saved state), so that a
trial in a pack, in a local worker or on an agent's machine (over gRPC) is pruned alike.
Rules follow Ray Tune's ASHA scheduler and Optuna's median pruner:

- asha: at rungs of `min_epochs * reduction_factor^k` epochs, a trial goes on only if its best
  objective so far is in the top 1/reduction_factor of those of the trials that reached the rung;
- median: from `min_epochs` on, a trial stops when its best objective so far is worse than the
  median of the other trials' at the same epoch.

Either compares a trial only once `warmup_trials` others have reached its rung or epoch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras_tuner as kt
import numpy as np
from keras_tuner.src.engine import trial as trial_module

STOPPED = trial_module.TrialStatus.STOPPED
# The oracle's saved state's key for the trials it pruned.
PRUNED_STATE = "sweeplab_pruned"


def best_so_far(trial, name: str, step: int, maximize: bool) -> float | None:
    """The trial's best value of `name` over its epochs up to `step` (from 0); None: it has not
    reported `step` yet (it stopped sooner, or has not got there)."""
    if not trial.metrics.exists(name):
        return None
    history = [o for o in trial.metrics.get_history(name) if o.step <= step]
    if not any(o.step == step for o in history):
        return None
    values = [float(np.mean(o.value)) for o in history if all(math.isfinite(v) for v in o.value)]
    if not values:
        return None
    return max(values) if maximize else min(values)


class Pruner:
    def __init__(self, cfg):
        self.min_epochs = cfg.min_epochs
        self.warmup_trials = cfg.warmup_trials

    def compares_at(self, epochs: int) -> bool:
        return epochs >= self.min_epochs

    def lags(self, mine: float, others: list[float], maximize: bool) -> bool:
        raise NotImplementedError

    def should_stop(self, trials: dict, trial_id: str, step: int, objective) -> bool:
        if not self.compares_at(step + 1):
            return False
        maximize = objective.direction == "max"
        mine = best_so_far(trials[trial_id], objective.name, step, maximize)
        if mine is None:
            return False
        others = [
            value
            for other_id, other in trials.items()
            if other_id != trial_id and (value := best_so_far(other, objective.name, step, maximize)) is not None
        ]
        return len(others) >= max(1, self.warmup_trials) and self.lags(mine, others, maximize)


class Asha(Pruner):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.reduction_factor = cfg.reduction_factor

    def compares_at(self, epochs: int) -> bool:
        rung = self.min_epochs
        while rung < epochs:
            rung *= self.reduction_factor
        return rung == epochs

    def lags(self, mine: float, others: list[float], maximize: bool) -> bool:
        # The cutoff of the top 1/reduction_factor among those that reached the rung (Ray's ASHA).
        keep = 1 / self.reduction_factor
        if maximize:
            return mine < float(np.percentile(others, 100 * (1 - keep)))
        return mine > float(np.percentile(others, 100 * keep))


class Median(Pruner):
    def lags(self, mine: float, others: list[float], maximize: bool) -> bool:
        median = float(np.median(others))
        return mine < median if maximize else mine > median


PRUNERS = {"asha": Asha, "median": Median}


def pruner_for(cfg) -> Pruner | None:
    """The configured pruner (`cfg.pruner`), or None."""
    kind = cfg.pruner.kind.value
    return PRUNERS[kind](cfg.pruner) if kind in PRUNERS else None


class PruningOracle:
    """Mixin for a Keras Tuner oracle: `update_trial` answers STOPPED to a trial `pruner` prunes.
    The oracle's own trial keeps its status (the trial ends COMPLETED, scored by its best epoch);
    `pruned` ({trial id: epochs trained}) is kept in the oracle's saved state."""

    pruner: Pruner
    pruned: dict[str, int]

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        trial = super().update_trial(trial_id, metrics, step=step)
        if trial.status == trial_module.TrialStatus.RUNNING and self.pruner.should_stop(
            self.trials, trial_id, step, self.objective
        ):
            self.pruned[trial_id] = step + 1
            answer = trial_module.Trial.from_proto(trial.to_proto())
            answer.status = STOPPED
            return answer
        return trial

    def get_state(self):
        return {**super().get_state(), PRUNED_STATE: self.pruned}


def prune_with(oracle, pruner: Pruner | None) -> None:
    """Make `oracle` (the search's own, not a worker's client) answer with `pruner`, with the trials
    it pruned before if the search resumes (Keras Tuner reloaded its state before this)."""
    if pruner is None or not isinstance(oracle, kt.Oracle):
        return
    oracle.__class__ = type(f"Pruning{type(oracle).__name__}", (PruningOracle, type(oracle)), {})
    oracle.pruner = pruner
    saved = Path(oracle._get_oracle_fname())
    oracle.pruned = json.loads(saved.read_text()).get(PRUNED_STATE, {}) if saved.is_file() else {}


def report_epoch(tuner, trial_id: str, epoch: int, logs: dict, going_on: bool) -> bool:
    """An epoch's logs (from 0) to the oracle as the trial's intermediate result. True if the trial
    was `going_on` and the oracle answers that it is pruned (`tuner.pruned` then holds the epochs
    it trained). Every epoch is reported, the last too: later trials are compared with it."""
    metrics = {name: float(value) for name, value in logs.items()}
    answer = tuner.oracle.update_trial(trial_id, metrics, step=epoch)
    if not going_on or answer.status != STOPPED:
        return False
    tuner.pruned[trial_id] = epoch + 1
    return True
