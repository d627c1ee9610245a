"""Warm start (`tuner.warm_start`): a new search's oracle holds earlier searches' finished trials as
completed ones before its first trial, without training them again.

They are read from the MLflow store each time the search starts (the source does not change), kept
beside the oracle's own trials, not among them (trial ids and `max_trials` stay the search's own):
the Bayesian tuner fits its Gaussian process to both; random and Hyperband never propose values
tried before. `tuner.warm_start_top=k` trains the k best previous trials again first (as Optuna's
`enqueue_trial`), for example on a new data set. Trials are taken only from a space with the same
hyperparameters, with values the space holds; the others are counted and skipped.
"""

from __future__ import annotations

import re

import keras_tuner as kt
from keras_tuner.src.engine import hyperparameters as hp_module
from keras_tuner.src.engine import trial as trial_module

from sweeplab.errors import ConfigError
from sweeplab.tracking.metric_names import scored
from sweeplab.tracking.tags import INFEASIBLE, PARENT, PRUNED

RUN_ID = re.compile(r"[0-9a-f]{32}")


def previous_runs(client, source: str) -> tuple[list, str]:
    """(the finished trial runs of `source`: a search run id, or an experiment's name; what it is)."""
    from mlflow.exceptions import MlflowException

    from sweeplab.tracking.queries import trial_runs

    if RUN_ID.fullmatch(source):
        try:
            search = client.get_run(source)
        except MlflowException:
            search = None
        if search is not None:
            return trial_runs(client, search.info.experiment_id, source), f"search run {source}"
    experiment = client.get_experiment_by_name(source)
    if experiment is None:
        raise ConfigError(
            "tuner.warm_start", source, "the id of a search run or the name of an experiment in this store"
        )
    return trial_runs(client, experiment.experiment_id), f"experiment {source!r}"


def typed_value(hp, text: str):
    """The run param `text` as a value of `hp`, or None if the space does not hold it."""
    try:
        if isinstance(hp, hp_module.Boolean):
            return {"True": True, "False": False}.get(text)
        if isinstance(hp, hp_module.Fixed):
            return hp.value if str(hp.value) == text else None
        if isinstance(hp, hp_module.Choice):
            return next((v for v in hp.values if str(v) == text), None)
        value = int(float(text)) if isinstance(hp, hp_module.Int) else float(text)
        return value if hp.min_value <= value <= hp.max_value else None
    except ValueError:
        return None


def as_trials(runs: list, space: kt.HyperParameters, objective: str) -> tuple[list[trial_module.Trial], int]:
    """(the runs Keras Tuner could have run in `space`, as completed trials scored as Keras Tuner
    scored them, best first; how many runs were skipped). Pruned or infeasible trials are skipped:
    their score is not a trained model's."""
    names = {hp.name for hp in space.space}
    trials, skipped = [], 0
    for run in runs:
        params = {k: v for k, v in run.data.params.items() if not k.startswith("tuner/")}
        score = run.data.metrics.get(scored(objective))
        usable = score is not None and PRUNED not in run.data.tags and INFEASIBLE not in run.data.tags
        values = {hp.name: typed_value(hp, params[hp.name]) for hp in space.space if hp.name in params}
        if not usable or set(params) != names or None in values.values():
            skipped += 1
            continue
        hyperparameters = space.copy()
        hyperparameters.values = values
        trial = trial_module.Trial(hyperparameters, trial_id=f"warm-{run.info.run_id}", status="COMPLETED")
        trial.score, trial.best_step = score, 0
        trials.append(trial)
    return trials, skipped


class WarmStartedOracle:
    """Mixin for a Keras Tuner oracle: the previous trials `warm` take part in choosing values (the
    Gaussian process of the Bayesian tuner; never proposed again), and `queue` (values) is tried first."""

    warm: dict[str, trial_module.Trial]
    warm_hashes: set[str]
    queue: list[dict]

    def populate_space(self, trial_id):
        for values in self.queue:
            if not super()._duplicate(values):  # not yet tried in this search (a resumed one too)
                return {"status": trial_module.TrialStatus.RUNNING, "values": dict(values)}
        own = self.trials
        self.trials = {**self.warm, **own}
        try:
            response = super().populate_space(trial_id)
        finally:
            self.trials = own
        values = response.get("values")
        if response["status"] == trial_module.TrialStatus.RUNNING and self._duplicate(values):
            # The Gaussian process's optimum is a trial done before: a value not tried instead.
            values = self._random_values()
            status = trial_module.TrialStatus.RUNNING if values else trial_module.TrialStatus.STOPPED
            response = {"status": status, "values": values}
        return response

    def _duplicate(self, values):
        return super()._duplicate(values) or self._compute_values_hash(values) in self.warm_hashes


def hold(oracle, trials: list[trial_module.Trial], top: int) -> None:
    """Make `oracle` hold `trials` (completed elsewhere) beside its own, the best `top` queued first."""
    trials = sorted(trials, key=lambda t: t.score, reverse=oracle.objective.direction == "max")
    oracle.__class__ = type(f"WarmStarted{type(oracle).__name__}", (WarmStartedOracle, type(oracle)), {})
    oracle.warm = {t.trial_id: t for t in trials}
    oracle.warm_hashes = {oracle._compute_values_hash(t.hyperparameters.values) for t in trials}
    oracle.queue = [dict(t.hyperparameters.values) for t in trials[:top]]


def warm_start(tuner, cfg, search_run) -> None:
    """Give the search's oracle the trials of `tuner.warm_start` (if set), say how many, tag the search run."""
    from sweeplab.search import progress
    from sweeplab.tracking.tags import WARM_START

    source = cfg.tuner.warm_start
    if not source:
        return
    runs, described = previous_runs(search_run.client, source)
    runs = [r for r in runs if r.data.tags.get(PARENT) != search_run.run_id]  # not its own
    oracle = tuner.oracle
    trials, skipped = as_trials(runs, oracle.get_space(), oracle.objective.name)
    hold(oracle, trials, cfg.tuner.warm_start_top)
    search_run.client.set_tag(search_run.run_id, WARM_START, f"{described}: {len(trials)} trials")
    others = f" ({skipped} skipped: another space, pruned, infeasible or unscored)" if skipped else ""
    again = f"; the best {len(oracle.queue)} trained again first" if oracle.queue else ""
    print(progress.fit(f"[sweeplab] warm start from {described}: {len(trials)} trials{others}{again}"), flush=True)
