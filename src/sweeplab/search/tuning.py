"""Keras Tuner: the hypermodel, the tuner of the configured kind, the search.

Each trial is tracked by hooking the tuner's own trial methods (Keras Tuner's
`logger=` argument is deprecated): `run_trial` opens the trial's MLflow run,
`_build_and_fit_model` adds the epoch logger, and when training ends the
best epoch's weights are restored, evaluated on validation and test, and
logged with the curves and the model summary.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.src.engine import tuner_utils
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch

from sweeplab.errors import describe, one_line, short_reason
from sweeplab.search import graph_memory, packing, progress, pruning, retries, session, training
from sweeplab.tracking import lineage, metric_names, model_cost, plots, predictions, writer
from sweeplab.tracking.runs import SearchRun, TrialRun
from sweeplab.tracking.tags import INFEASIBLE, PRUNED, RETRY_OF, TRIAL_ID

# Under the search's folder: Keras Tuner writes each trial's TensorBoard logs to <trial id>/.
TENSORBOARD = "tensorboard"
# A process that lost its chief ends the runs it trains within ABANDON_S, all at once, each
# write retried for ABANDON_WRITE_BUDGET_S: a store that is down holds it no longer.
ABANDON_S = 20
ABANDON_WRITE_BUDGET_S = 10

TUNERS = {
    "random": kt.RandomSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
    "grid": kt.GridSearch,
}


class SweepHyperModel(kt.HyperModel):
    """Builds a family's model from the values the space gives for a trial."""

    def __init__(self, family, cfg, dataset):
        super().__init__(name=cfg.family)
        self.family, self.cfg, self.dataset = family, cfg, dataset

    def build(self, hp):
        return self.build_with(self.cfg.space.sample(hp))

    def build_with(self, values: dict):
        model = self.family.build(values, self.dataset, self.cfg.model)
        training.compile_model(model, values, self.dataset, self.cfg.trainer, self.cfg.model)
        return model


class TrackedTrials:
    """Mixin for a Keras Tuner class: one MLflow child run per trial."""

    # Set from a worker's heartbeat thread once its lease is gone: why its trials stop training.
    lease_lost: str | None = None
    # What the search shows as trials end (set by `search`).
    progress: progress.SearchProgress | None = None

    def __init__(
        self, *args, search_run: SearchRun, dataset, family_name: str, log_models: bool, worker: str | None, **kwargs
    ):
        self.search_run = search_run
        self.worker = worker  # the tag of trials trained by a worker process
        self.dataset = dataset
        self.family_name = family_name
        self.log_models = log_models
        self.lineage = lineage.split_datasets(dataset)  # the splits as MLflow datasets, digested once
        self._trial_run: TrialRun | None = None
        # Runs of the trials this process trains now (one, or a pack's), until the oracle has taken
        # their result or they failed: what abandon_trial fails.
        self.training_runs: list[TrialRun] = []
        self._model = None
        self._best: BestEpochInMemory | None = None
        self._eval_sets: dict = {}  # tf.data val/test pipelines, built once
        self._scored: dict[str, float] = {}  # what each trial trained here scored, for its result line
        # Whether each epoch goes to the oracle, which may prune the trial; {trial id: epochs
        # trained} of those it pruned.
        self.pruning = False
        self.pruned: dict[str, int] = {}
        super().__init__(*args, **kwargs)

    def new_trial_run(self, trial, tags: dict | None = None) -> TrialRun:
        values = dict(trial.hyperparameters.values)
        earlier = self.earlier_run(trial.trial_id)
        if earlier is not None:
            tags = {**(tags or {}), RETRY_OF: earlier}
        return TrialRun(
            self.search_run, trial.trial_id, self.family_name, values, self.worker, datasets=self.lineage, tags=tags
        )

    def earlier_run(self, trial_id: str) -> str | None:
        """The latest run of an earlier try of the trial in this search, if it was tried before."""
        from sweeplab.tracking.queries import trial_runs

        search = self.search_run
        where = f"tags.`{TRIAL_ID}` = '{trial_id}'"
        try:
            runs = trial_runs(search.client, search.experiment_id, search.run_id, status=None, where=where)
        except Exception as err:  # the store (lookups are not retried): the link matters less than the trial
            progress.say(f"trial {trial_id}: no {RETRY_OF} tag, its earlier runs were not found ({describe(err)})")
            return None
        return max(runs, key=lambda r: r.info.start_time).info.run_id if runs else None

    def run_trial(self, trial, *args, **kwargs):
        self._trial_run = self.new_trial_run(trial)
        self.training_runs.append(self._trial_run)
        self._best = None
        try:
            histories = super().run_trial(trial, *args, **kwargs)
            self._check_finite(histories)
            self._restore_best(trial)
            objective = self.oracle.objective
            scored = tuner_utils.convert_to_metrics_dict(histories, objective)[objective.name]
            self.record_trial(
                trial, self._model, self._trial_run, self.final_metrics(self._model), len(histories), scored
            )
        except BaseException as err:
            status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
            self._trial_run.fail(describe(err), status)
            self.training_runs.remove(self._trial_run)
            self._trial_run = None
            raise
        self._trial_run = None  # its run ends FINISHED once recorded and accepted (on_trial_end)
        return histories

    def on_trial_end(self, trial):
        """The trial's end to the oracle; then its run ends FINISHED (once its record has landed), or
        FAILED if the trial did not complete. A run whose result the oracle did not take (the call
        raised) stays in `training_runs`, for whoever stops this process to fail it with why."""
        if self.worker:
            # A worker's or agent's record lands before the chief hears the trial ended: a chief
            # lost meanwhile leaves a complete record for the resumed search to accept.
            writer.wait_for_writes()
        runs = [run for run in self.training_runs if run.trial_id == trial.trial_id]
        super().on_trial_end(trial)
        for run in runs:
            self.training_runs.remove(run)
            if trial.status == "COMPLETED":
                run.accept()
            else:
                run.fail(one_line(trial.message or f"the trial ended {trial.status}"))
        self._show_result(trial, runs)

    def on_search_begin(self):
        self.oracle.verbose = 0  # Keras Tuner's search sets its display's verbosity to fit's: ours shows trials
        super().on_search_begin()

    def on_trial_begin(self, trial):
        """An unpacked trial's table (a pack shows its trials in one, `packing.train_pack`)."""
        super().on_trial_begin(trial)
        if self.hypermodel.cfg.trainer.verbose:
            values = dict(trial.hyperparameters.values)
            title = f"trial {trial.trial_id}: up to {self.epoch_budget(values)} epochs"
            progress.show_trials(title, [(trial.trial_id, values)])

    def epoch_budget(self, values: dict) -> int:
        """The epochs a trial may train here (Hyperband: from its `tuner/initial_epoch` to `tuner/epochs`)."""
        return int(values.get("tuner/epochs", self.hypermodel.cfg.trainer.epochs)) - int(
            values.get("tuner/initial_epoch", 0)
        )

    def _show_result(self, trial, runs: list[TrialRun]) -> None:
        """The trial's result line (or why it failed), then the search's progress."""
        scored = self._scored.pop(trial.trial_id, None)
        if trial.status != "COMPLETED":
            why = one_line(trial.message or f"it ended {trial.status}")
            infeasible = f"{model_cost.InfeasibleTrial.__name__}: "
            said = why.partition(infeasible)[2] if infeasible in why else f"failed: {why}"
            progress.say(f"trial {trial.trial_id} {said}")
            scored = None
        elif runs:
            objective = self.oracle.objective
            history = runs[0].epochs.history
            curve = history.get(objective.name, [])
            best = None
            if curve:
                pick = max if objective.direction == "max" else min
                best = pick(range(len(curve)), key=curve.__getitem__)
                scored = curve[best] if scored is None else scored
                best += 1 + int(trial.hyperparameters.values.get("tuner/initial_epoch", 0))
            trained = len(history.get("loss", curve))
            budget = self.epoch_budget(trial.hyperparameters.values)
            pruned = self.pruned.get(trial.trial_id) is not None
            progress.trial_result(trial.trial_id, objective.name, scored, best, trained, budget, pruned)
        if self.progress is not None:
            self.progress.trial_ended(trial.trial_id, scored)

    def abandon_trial(self, reason: str) -> None:
        """From another thread, before this process stops: the runs of the trials it trains
        (one, or every branch of a pack still training) end FAILED, within ABANDON_S."""
        ends = [
            threading.Thread(target=run.abandon, args=(reason, ABANDON_WRITE_BUDGET_S), daemon=True)
            for run in list(self.training_runs)
        ]
        deadline = time.monotonic() + ABANDON_S
        for end in ends:
            end.start()
        for end in ends:
            end.join(max(0.0, deadline - time.monotonic()))

    def _build_and_fit_model(self, trial, *args, **kwargs):
        # Added here, after Keras Tuner deep-copies the search's callbacks.
        kwargs["callbacks"] = [
            StopWhenLeaseLost(self),
            *kwargs.get("callbacks", []),
            self._trial_run.epochs.callback(),
            TrialEpochs(self, trial),
            *([ReportEpochs(self, trial)] if self.pruning else []),
        ]
        kwargs["verbose"] = 0  # its epochs show as a pack's do (TrialEpochs), not as Keras' bar or lines
        if self.hypermodel.cfg.trainer.best_weights == "memory":
            kwargs["callbacks"] = [self._in_memory(c) for c in kwargs["callbacks"]]
        return super()._build_and_fit_model(trial, *args, **kwargs)

    def _in_memory(self, callback):
        """Keras Tuner's per-improvement checkpoint writer -> one that keeps the
        best weights in memory (the same instance across a trial's executions)."""
        if type(callback) is not SaveBestEpoch:
            return callback
        if self._best is None:
            self._best = BestEpochInMemory(callback.objective, callback.filepath)
        return self._best

    def _try_build(self, hp):
        # The last trial's model and graphs go before Keras Tuner clears the session.
        self._model = None
        graph_memory.release_traced_graphs()
        with session.turn:  # Keras Tuner clears the session here
            self._model = super()._try_build(hp)
        # Keras Tuner's invalid-trial path: never fit (an INVALID trial is retried only with max_retries_per_trial).
        reason = model_cost.refuse_infeasible(self._model, self._trial_run, self.hypermodel.cfg.tuner.constraints)
        if reason is not None:
            retries.say_infeasible(self.oracle, self._trial_run.trial_id)
            raise model_cost.InfeasibleTrial(f"not trained: {reason}")
        return self._model

    def _build_hypermodel(self, hp):
        # A trial's initial weights depend on the seed and the trial alone: the same in a
        # pack, in a worker or after a resume as in one process.
        keras.utils.set_random_seed(trial_seed(self.hypermodel.cfg.seed, hp))
        return super()._build_hypermodel(hp)

    def _check_finite(self, histories) -> None:
        for history in histories:
            losses = history.history.get("loss", [])
            for epoch, loss in enumerate(losses):
                if not math.isfinite(loss):
                    raise kt.errors.FailedTrialError(f"loss became {loss} at epoch {epoch + 1}")

    def _restore_best(self, trial) -> None:
        """The best epoch's weights into the model; Keras Tuner's checkpoint holds them too."""
        if self._best is not None and self._best.weights is not None:
            self._best.restore_and_write(self._model)
        else:
            self._model.load_weights(self._get_checkpoint_fname(trial.trial_id))

    def eval_set(self, split_name: str):
        """The split as a tf.data pipeline, built once: evaluating it reuses the traced test function."""
        if split_name not in self._eval_sets:
            self._eval_sets[split_name] = training.eval_data(
                getattr(self.dataset, split_name), self.hypermodel.cfg.trainer
            )
        return self._eval_sets[split_name]

    def final_metrics(self, model) -> dict:
        """`final_val_*` and `test_*`: the model evaluated on the validation and test splits."""
        metrics = {}
        for split_name in metric_names.FINAL_PREFIXES:
            if self.hypermodel.cfg.trainer.tf_data:
                scores = model.evaluate(self.eval_set(split_name), verbose=0, return_dict=True)
            else:
                split = getattr(self.dataset, split_name)
                scores = model.evaluate(split.x, split.y, verbose=0, return_dict=True)
            metrics.update(metric_names.final_metrics(split_name, scores))
        return metrics

    def record_trial(self, trial, model, run: TrialRun, final: dict, executions: int, scored: float) -> None:
        """A trained trial's results, curves, summary, predictions and model, to its run, written on
        the writer thread while the next trial trains (they only read the model, which nothing
        trains any more); the run is FINISHED once they have landed.

        With `executions_per_trial` > 1 Keras Tuner scores the trial by the mean of each
        execution's best epoch (logged as `scored_<objective>`); the logged model, and
        the final metrics, are those of the best epoch of the best execution.
        """
        metrics = {
            "epochs_trained": len(run.epochs.history.get("loss", [])),
            "executions": executions,
            metric_names.scored(self.oracle.objective.name): scored,
            **final,
            "param_count": model.count_params(),  # every weight; `params` (model_cost): trainable ones
            **self._costs(trial, model),
        }
        self._scored[trial.trial_id] = scored
        tags = {}
        if trial.trial_id in self.pruned:
            tags[PRUNED] = str(self.pruned[trial.trial_id])
        infeasible = model_cost.infeasible_reason(metrics, self.hypermodel.cfg.tuner.constraints)
        if infeasible:  # known only once trained (latency): kept out of leaderboards and ensembles
            tags[INFEASIBLE] = infeasible
        steps = self._record_steps(trial, model, run, metrics)
        for key, value in tags.items():  # before the results: a run with them is never taken for a plain one
            steps.insert(0, lambda key=key, value=value: run.client.set_tag(run.run_id, key, value))
        run.complete_in_background(steps)

    def _costs(self, trial, model) -> dict:
        """The trained model's `params` and `latency_ms`, measured here, on the training thread, not while
        the next trial trains. A measurement that fails leaves them out, with a line: the trial stands."""
        try:
            with session.turn:
                return model_cost.measure(model, self.dataset.test.x)
        except Exception as err:
            progress.say(f"trial {trial.trial_id}: its latency could not be measured ({describe(err)})")
            return {model_cost.PARAMS: model_cost.trainable_params(model)}

    def _record_steps(self, trial, model, run: TrialRun, metrics: dict) -> list[Callable[[], None]]:
        """The writes of a trained trial's record, in order: its model, results, curves, summary,
        predictions, TensorBoard logs."""
        data = self.dataset
        history = {name: list(values) for name, values in run.epochs.history.items()}
        tensorboard = Path(self.project_dir) / TENSORBOARD / trial.trial_id

        # Only what reads the model takes turns with clearing the session; uploads do not.
        def logged_model():
            with session.turn:
                prepared = run.prepare_model(model, data.test.take(5).x)
            run.upload_model(prepared)

        def curves():
            figure = plots.learning_curves(history, f"trial {trial.trial_id}")
            run.log_figure(figure, "learning_curves.png")
            plots.close(figure)

        def summary():
            lines: list[str] = []
            with session.turn:
                model.summary(print_fn=lambda line, **_: lines.append(line))
            run.log_text("\n".join(lines), "model_summary.txt")

        def saved_predictions():  # saved once so that ensembles never recompute them
            with session.turn:
                collected = predictions.collect(model, data)
            run.log_bytes(predictions.to_bytes(collected), predictions.ARTIFACT)

        steps = [logged_model] if self.log_models else []  # first: the results link to the model
        steps += [
            lambda: run.log_results(metrics),
            *([curves] if history else []),  # none for a trial recorded again from its checkpoint
            summary,
            saved_predictions,
        ]
        if tensorboard.is_dir():
            steps.append(lambda: run.log_artifacts(str(tensorboard), TENSORBOARD))
        return steps

    def rerecord_unlogged(self) -> None:
        """Trials Keras Tuner finished whose run never did (the process stopped while it was being
        written): recorded again from their checkpoint, without training them again."""
        from sweeplab.tracking.queries import trial_runs
        from sweeplab.tracking.tags import RERECORDED

        search = self.search_run
        logged = {r.data.tags.get(TRIAL_ID) for r in trial_runs(search.client, search.experiment_id, search.run_id)}
        for trial in self.oracle.trials.values():
            if trial.status != "COMPLETED" or trial.trial_id in logged:
                continue
            print(
                f"[sweeplab] trial {trial.trial_id}: finished but not recorded; recording it from its checkpoint",
                flush=True,
            )
            session.clear()
            model = self._build_hypermodel(trial.hyperparameters)
            try:
                model.load_weights(self._get_checkpoint_fname(trial.trial_id))
            except (OSError, ValueError) as err:
                print(
                    f"[sweeplab] trial {trial.trial_id}: cannot record it again ({short_reason(str(err))})", flush=True
                )
                continue
            run = self.new_trial_run(trial, tags={RERECORDED: "from its Keras Tuner checkpoint (no epoch curves)"})
            self.record_trial(trial, model, run, self.final_metrics(model), executions=1, scored=trial.score)
            run.accept()  # the oracle took its result before the process stopped
        writer.wait_for_writes()


def trial_seed(seed: int, hp) -> int:
    """A seed of the search's seed and the trial's values (stable across processes and packs)."""
    import hashlib
    import json

    values = {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
    text = json.dumps([seed, values], sort_keys=True, default=str)
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


class LeaseLostError(Exception):
    """This worker's trials went to another while it stalled."""


class StopWhenLeaseLost(keras.callbacks.Callback):
    """Ends a trial's training at the end of the epoch in which `tuner.lease_lost` was set: no more
    compute or epochs for a trial another process owns now. First of the callbacks, so the epoch's
    checkpoint is not written either. (A batch hook would make Keras wait for every step.)"""

    def __init__(self, tuner):
        super().__init__()
        self.tuner = tuner

    def on_epoch_end(self, epoch, logs=None):
        if self.tuner.lease_lost:
            raise LeaseLostError(self.tuner.lease_lost)


class TrialEpochs(keras.callbacks.Callback):
    """A trial trained alone shows its epochs as a pack's do (`progress.PackEpochs`, by trainer.verbose)."""

    def __init__(self, tuner, trial):
        super().__init__()
        self.objective = tuner.oracle.objective
        self.trial_id = trial.trial_id
        epochs = int(trial.hyperparameters.values.get("tuner/epochs", tuner.hypermodel.cfg.trainer.epochs))
        self.shown = progress.PackEpochs(
            tuner.progress, f"trial {trial.trial_id}", epochs, tuner.hypermodel.cfg.trainer.verbose
        )
        self.best: float | None = None
        self._began = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._began = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.objective.name)
        if value is not None and (self.best is None or self.objective.better_than(value, self.best)):
            self.best = float(value)
        best = (self.objective.name, self.best, self.trial_id) if self.best is not None else None
        self.shown.epoch_ended(epoch + 1, None, best, time.monotonic() - self._began)

    def on_train_end(self, logs=None):
        self.shown.close()


class ReportEpochs(keras.callbacks.Callback):
    """Each epoch to the oracle as the trial's intermediate result; training stops if it prunes the trial.
    Keras Tuner then finds the objective reported and scores the trial from these epochs (the best
    one's, as from the history: one execution per trial, which validation requires with a pruner)."""

    def __init__(self, tuner, trial):
        super().__init__()
        self.tuner, self.trial_id = tuner, trial.trial_id

    def on_epoch_end(self, epoch, logs=None):
        # After early stopping's and the epoch budget's say (Keras Tuner's callbacks come first).
        going_on = not self.model.stop_training and epoch + 1 < self.params["epochs"]
        if pruning.report_epoch(self.tuner, self.trial_id, epoch, logs or {}, going_on):
            self.model.stop_training = True


class BestEpochInMemory(SaveBestEpoch):
    """Keeps the best epoch's weights in memory instead of writing Keras Tuner's
    checkpoint at every improving epoch; the file is written once, at the end."""

    weights = None

    def _save_model(self):
        self.weights = self.model.get_weights()

    def restore_and_write(self, model) -> None:
        model.set_weights(self.weights)
        # Keras Tuner's load_model / get_best_models read this file.
        model.save_weights(self.filepath)


def make_tuner(
    cfg,
    hypermodel,
    search_run: SearchRun,
    dataset,
    directory: str,
    project_name: str,
    worker: str | None = None,
    overwrite: bool = False,
):
    """The configured Keras Tuner class, with trial tracking mixed in; `worker`
    names the worker process that trains its trials, if any; `overwrite` starts
    the search's Keras Tuner state afresh."""
    base = TUNERS[cfg.tuner.kind.value]
    tuner_class = type(f"Tracked{base.__name__}", (TrackedTrials, base), {})
    t = cfg.tuner
    options = dict(
        hypermodel=hypermodel,
        objective=kt.Objective(t.objective, direction=t.direction.value),
        seed=t.seed,
        executions_per_trial=t.executions_per_trial,
        max_consecutive_failed_trials=t.max_consecutive_failed_trials,
        max_retries_per_trial=t.max_retries_per_trial,
        overwrite=overwrite,
        directory=directory,
        project_name=project_name,
    )
    if t.kind.value == "hyperband":
        options.update(max_epochs=t.max_epochs, factor=t.factor, hyperband_iterations=t.hyperband_iterations)
    else:
        options["max_trials"] = t.max_trials
    if t.kind.value == "bayesian":
        options.update(num_initial_points=t.num_initial_points, alpha=t.alpha, beta=t.beta)
    tuner = tuner_class(
        search_run=search_run,
        dataset=dataset,
        family_name=cfg.family,
        log_models=cfg.tracking.log_models,
        worker=worker,
        **options,
    )
    # Keras Tuner's own display ("Search: Running Trial #N" tables, "Trial N Complete" blocks) is
    # replaced by sweeplab's (`progress`), which names trials by their id, as their runs are named.
    tuner.oracle.verbose = 0
    _retry_and_prune(tuner, cfg)
    return tuner


def _retry_and_prune(tuner, cfg) -> None:
    """The search's own oracle (not a worker's client) retries (`retries`) and prunes (`pruning`)."""
    retries.retry(tuner.oracle)
    pruner = pruning.pruner_for(cfg)
    tuner.pruning = pruner is not None
    pruning.prune_with(tuner.oracle, pruner)
    if isinstance(tuner.oracle, pruning.PruningOracle):
        tuner.pruned = tuner.oracle.pruned  # one record: a resumed search tags trials it pruned before


def search(tuner, cfg, dataset) -> None:
    keras.utils.set_random_seed(cfg.seed)
    if cfg.trainer.tf_data:
        train, val = training.fit_data(dataset, cfg.trainer, cfg.seed)
        # The pipeline shuffles every epoch itself.
        data = dict(x=train, validation_data=val, shuffle=False)
    else:
        data = dict(
            x=dataset.train.x,
            y=dataset.train.y,
            validation_data=(dataset.val.x, dataset.val.y),
            batch_size=cfg.trainer.batch_size,
        )
    pack = packing.pack_size(cfg, dataset)
    tuner.progress = search_progress(tuner, cfg)
    tuner.progress.start()
    graph_memory.spare_long_lived_objects()
    complete = False
    try:
        if pack > 1:
            packing.search_packed(tuner, cfg, pack, data["x"], data["validation_data"])
        else:
            tuner.search(
                **data,
                epochs=cfg.trainer.epochs,
                callbacks=training.callbacks(cfg.trainer, Path(tuner.project_dir) / TENSORBOARD),
                verbose=cfg.trainer.verbose,
            )
        complete = True
    except BaseException as err:  # runs whose result the oracle never took (their report, a pack's others)
        # A worker's caller fails them, saying why its chief is lost (worker.py).
        if isinstance(err, KeyboardInterrupt) or not tuner.worker:
            status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
            for run in tuner.training_runs:
                run.fail(f"the search stopped before it took this trial's result ({describe(err)})", status)
        raise
    finally:
        tuner.progress.finish(complete)
        graph_memory.release_long_lived_objects()
        writer.wait_for_writes()  # every finished trial's run FINISHED before the search reads them


def search_progress(tuner, cfg) -> progress.SearchProgress:
    """The search's progress as this process sees it: every trial of the search in one process (a
    resumed one counts those already done), a worker's or an agent's own trials otherwise."""
    from sweeplab.search.chief import ENV_WORKERS

    objective = tuner.oracle.objective
    # Local workers share their chief's terminal: plain lines, not several live bars at once.
    live = progress.on_terminal() and ENV_WORKERS not in os.environ
    maximize = objective.direction == "max"
    if tuner.worker:
        return progress.SearchProgress(tuner.tuner_id, objective.name, maximize, None, live)
    trials = tuner.oracle.trials.values()
    ended = [t for t in trials if t.status in ("COMPLETED", "FAILED", "INVALID")]
    failed = sum(t.status != "COMPLETED" for t in ended)
    shown = progress.SearchProgress(
        "search", objective.name, maximize, planned_trials(tuner.oracle), live, len(ended), failed
    )
    for t in ended:
        if t.status == "COMPLETED" and t.score is not None:
            shown.consider(t.trial_id, t.score)
    return shown


def planned_trials(oracle) -> int | None:
    """How many trials the search plans: `max_trials`, or Hyperband's brackets summed (None: no end)."""
    if not hasattr(oracle, "_get_num_brackets"):
        return oracle.max_trials
    if not math.isfinite(oracle.hyperband_iterations):
        return None
    brackets = range(oracle._get_num_brackets())
    per_iteration = sum(oracle._get_size(b, r) for b in brackets for r in range(oracle._get_num_rounds(b)))
    return int(oracle.hyperband_iterations) * per_iteration


def is_failure_limit(err: RuntimeError) -> bool:
    """Keras Tuner's RuntimeError for `max_consecutive_failed_trials` (it has no class of its own)."""
    return str(err).startswith("Number of consecutive failures exceeded the limit")


def trial_scores(tuner) -> list[float | None]:
    """Each trial's objective in trial order (None where the trial failed)."""
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id) if t.trial_id.isdigit() else 0)
    return [
        t.score if t.status == "COMPLETED" and t.score is not None and np.isfinite(t.score) else None for t in trials
    ]


def trial_failures(
    tuner, reasons: dict[str, str] | None = None, finished: set[str] | None = None
) -> list[tuple[str, str]]:
    """(trial id, why) of every failed trial; `reasons` fills in messages the oracle lacks. With
    `finished` (the trial ids whose run is FINISHED), a trial the oracle counts as completed
    whose run did not finish (its record failed to land) is a failure too."""
    reasons = reasons or {}
    failures = []
    for t in tuner.oracle.trials.values():
        if t.status == "INVALID" and finished is not None and t.trial_id in finished:
            continue  # outside tuner.constraints: its run FINISHED untrained, tagged why
        if t.status in ("FAILED", "INVALID"):
            # Keras Tuner's message is the traceback: a store's error in it names its URI.
            failures.append((t.trial_id, one_line(t.message or reasons.get(t.trial_id, ""))))
        elif t.status == "COMPLETED" and finished is not None and t.trial_id not in finished:
            why = reasons.get(t.trial_id) or "its run was never closed"
            failures.append((t.trial_id, short_reason(f"trained, but its record did not land: {why}")))
    return failures
