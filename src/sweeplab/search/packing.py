"""Trial packing (`tuner.pack`): several trials trained at once, as branches of one graph.

A trial of a small model on small data is mostly per-step framework overhead and
graph tracing, not arithmetic, so the cores idle. Fusing the models of repeated
training jobs into one (HFTA: Wang et al., "Horizontally Fused Training Array",
MLSys 2021) trains them at the cost of little more than one. Here up to K trials
are asked of the oracle at once (a tuner id per slot, as distributed mode does),
each is built as the standalone Keras model it would be alone, and one training
step runs every active branch on the same batch with its own loss, optimizer,
learning rate and metrics. Each branch keeps its own early stopping and best
epoch; a branch that stops (or diverges) is skipped by the step from then on
(`tf.cond`) while the others go on. Afterwards every branch is its own trial
again: its MLflow run, final metrics, logged model and result to the oracle.
"""

from __future__ import annotations

import contextlib
import math
import time

import keras
import numpy as np
import tensorflow as tf
from keras_tuner.src.engine import trial as trial_module

from sweeplab.errors import describe
from sweeplab.search import progress, pruning, retries
from sweeplab.tracking import metric_names, model_cost

# Families whose models take the same flat batches and are cheap to fuse.
DENSE_FAMILIES = {"mlp", "mlp_variant", "multi_output"}
AUTO_PACK = 8


def why_not_packed(cfg, dataset) -> str | None:
    """None when the search's trials can share a graph, else why they run one by one."""
    images = any(i.is_image for i in dataset.inputs)
    if cfg.family not in DENSE_FAMILIES and not (cfg.family == "residual" and not images):
        return f"model={cfg.family} on {'images' if images else 'this data'} trains one trial at a time"
    if cfg.tuner.executions_per_trial > 1:
        return "tuner.executions_per_trial > 1"
    if cfg.trainer.tensorboard:
        return "trainer.tensorboard=true (one TensorBoard log per trial's own fit)"
    if not cfg.trainer.tf_data:
        return "trainer.tf_data=false (packs share one tf.data pipeline)"
    return None


def pack_size(cfg, dataset) -> int:
    """How many trials train together: tuner.pack (auto: AUTO_PACK where the family allows)."""
    wanted = AUTO_PACK if cfg.tuner.pack == "auto" else int(cfg.tuner.pack)
    if wanted > 1 and why_not_packed(cfg, dataset):
        return 1
    return wanted


class PackedModel(keras.Model):
    """The branches of a pack, trained in one step; logs are `b<i>_<metric>`."""

    def __init__(self, branches: list, on_error):
        super().__init__()
        self.branches = branches
        self.active = keras.Variable(np.ones(len(branches), "int32"), dtype="int32", trainable=False, name="active")
        # on_error(index, step, error): a branch whose "training" or "evaluation" step raised while it was
        # traced; it is left out of the graph.
        self.on_error = on_error
        self.failed: set[int] = set()

    def _each_branch(self, step: str, step_of):
        """{log name: value} after `step_of(index, branch)` for every branch; one that raises while traced
        (its model's own code) is reported and left out, the others go on."""
        logs = {}
        for index, branch in enumerate(self.branches):
            if index in self.failed:
                continue
            try:
                step_of(index, branch)
            except Exception as err:
                self.failed.add(index)
                self.on_error(index, step, err)
                continue
            logs.update({f"b{index}_{k}": v for k, v in branch.get_metrics_result().items()})
        return logs

    def call(self, x, training=False):
        return [branch(x, training=training) for branch in self.branches]

    @property
    def metrics(self):
        return [metric for branch in self.branches for metric in branch.metrics]

    def _batch_size(self, x):
        return tf.shape(keras.tree.flatten(x)[0])[0]

    def train_step(self, data):
        x, y = data[0], data[1]

        def train(index, branch):
            def step():
                with tf.GradientTape() as tape:
                    y_pred = branch(x, training=True)
                    loss = branch._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=None, training=True)
                branch._loss_tracker.update_state(loss, sample_weight=self._batch_size(x))
                gradients = tape.gradient(loss, branch.trainable_weights)
                branch.optimizer.apply_gradients(zip(gradients, branch.trainable_weights))
                branch._compile_metrics.update_state(y, y_pred, None)
                return tf.constant(True)

            # A stopped branch gets no update at all (Adam would move it even with zero gradients).
            tf.cond(self.active[index] > 0, step, lambda: tf.constant(False))

        return self._each_branch("training", train)

    def test_step(self, data):
        x, y = data[0], data[1]

        def test(index, branch):
            y_pred = branch(x, training=False)
            loss = branch._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=None, training=False)
            branch._loss_tracker.update_state(loss, sample_weight=self._batch_size(x))
            branch._compile_metrics.update_state(y, y_pred, None)

        return self._each_branch("evaluation", test)


def branch_logs(logs: dict, index: int) -> dict:
    """Branch `index`'s epoch logs under the names its model alone would log."""
    own, val = f"b{index}_", f"{metric_names.VAL}b{index}_"
    picked = {}
    for key, value in logs.items():
        if key.startswith(own):
            picked[key[len(own) :]] = float(value)
        elif key.startswith(val):
            picked[metric_names.VAL + key[len(val) :]] = float(value)
    return picked


class Branch:
    """One trial of a pack: its model and run, and what it would have had alone (early
    stopping, the best epoch's weights, its epoch budget)."""

    def __init__(self, slot: str, trial, tuner):
        self.slot, self.trial, self.tuner = slot, trial, tuner
        self.model = None
        self.run = None
        self.failure: str | None = None
        self.status = trial_module.TrialStatus.COMPLETED
        hp = trial.hyperparameters.values
        self.epochs = int(hp.get("tuner/epochs", tuner.hypermodel.cfg.trainer.epochs))
        self.initial_epoch = int(hp.get("tuner/initial_epoch", 0))
        self.history: list[dict] = []  # its epochs' logs, under its own metric names
        self.active = True
        self.callbacks: list = []
        self.best = None  # BestEpochInMemory
        self.best_step = 0  # the epoch (from 0) its result is taken from

    def fail(self, reason: str, status=trial_module.TrialStatus.FAILED) -> None:
        self.failure, self.status, self.active = reason, status, False


class PackMonitor(keras.callbacks.Callback):
    """Each branch's callbacks on its own logs; a branch stops on its own early stopping,
    its epoch budget or a NaN loss; the pack stops when no branch is left. Each epoch is
    shown (`shown`) by how many trials trained, the best objective so far and its trial."""

    def __init__(self, branches: list[Branch], shown: progress.PackEpochs | None = None):
        super().__init__()
        self.branches = branches
        self.shown = shown
        self.best: tuple[float, str] | None = None  # (objective, trial id)
        self._epoch_began = time.monotonic()

    def on_train_begin(self, logs=None):
        for branch in self.branches:
            for callback in branch.callbacks:
                callback.on_train_begin()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_began = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        training = sum(b.active for b in self.branches)
        reached: list[tuple[Branch, dict]] = []  # the branches that trained this epoch, with their logs
        for index, branch in enumerate(self.branches):
            if not branch.active:
                continue
            own = branch_logs(logs or {}, index)
            if not math.isfinite(own.get("loss", 0.0)):
                branch.fail(f"FailedTrialError: loss became {own['loss']} at epoch {epoch + 1}")
                continue
            branch.history.append(own)
            self._consider(branch, own)
            for callback in branch.callbacks:
                callback.on_epoch_end(epoch, own)
            branch.active = not branch.model.stop_training and epoch + 1 < branch.epochs
            reached.append((branch, own))
        if reached and reached[0][0].tuner.pruning:
            self._prune(epoch, reached)
        self.model.active.assign(np.array([int(b.active) for b in self.branches], "int32"))
        if not any(b.active for b in self.branches):
            self.model.stop_training = True
        if self.shown is not None:
            objective = self.branches[0].tuner.oracle.objective
            best = (objective.name, *self.best) if self.best else None
            self.shown.epoch_ended(epoch + 1, training, best, time.monotonic() - self._epoch_began)

    @staticmethod
    def _prune(epoch: int, reached: list[tuple[Branch, dict]]) -> None:
        """Every branch's epoch to the oracle, then each asks again whether it goes on: the pack's
        trials reached the epoch together, so each is compared with all of them (the oracle keeps
        the value twice, which changes no mean). For a worker or agent: two calls to its chief per
        branch and epoch."""
        oracle = reached[0][0].tuner.oracle
        for branch, own in reached:
            oracle.update_trial(branch.trial.trial_id, {k: float(v) for k, v in own.items()}, step=epoch)
        for branch, own in reached:
            if branch.active and pruning.report_epoch(branch.tuner, branch.trial.trial_id, epoch, own, True):
                branch.active = False

    def _consider(self, branch: Branch, logs: dict) -> None:
        objective = branch.tuner.oracle.objective
        try:
            value = objective.get_value(logs)
        except (KeyError, ValueError):  # an objective the epoch logs do not hold
            return
        if math.isfinite(value) and (self.best is None or objective.better_than(value, self.best[0])):
            self.best = (value, branch.trial.trial_id)


def search_packed(tuner, cfg, size: int, train, val) -> None:
    """Keras Tuner's search loop, `size` trials at a time (`train`, `val`: the tf.data pipelines)."""
    slots = [f"{tuner.tuner_id}-pack{i}" for i in range(size)]
    packs = 0
    while True:
        asked, stopped = [], 0
        for slot in slots:
            tuner.pre_create_trial()
            trial = tuner.oracle.create_trial(slot)
            if trial.status == trial_module.TrialStatus.STOPPED:
                stopped += 1
            elif trial.status == trial_module.TrialStatus.RUNNING:
                asked.append(Branch(slot, trial, tuner))
        if not asked:
            if stopped == len(slots):  # every slot has been told the search is over
                return
            continue  # the oracle waits for trials running elsewhere; its client paces the asks (oracle_access)
        # Hyperband: one fit per starting epoch (branches differ only in how long they go on).
        for start in sorted({b.initial_epoch for b in asked}):
            packs += 1
            pack = [b for b in asked if b.initial_epoch == start]
            train_pack(pack, f"{tuner.tuner_id}/{packs}", tuner, cfg, train, val)


def train_pack(branches: list[Branch], name: str, tuner, cfg, train, val) -> None:
    """Build, train, record and report one pack. A branch that fails (its run, model, training
    step, restore, evaluation or record) fails its trial alone, as it would unpacked; Ctrl-C
    ends every run of the pack KILLED and stops the search."""
    from sweeplab.search import graph_memory, session
    from sweeplab.tracking.tags import PACK

    session.clear()
    graph_memory.release_traced_graphs()
    pack = f"{name} (trials {','.join(b.trial.trial_id for b in branches)})"
    # In one process the pack's number is enough; a worker's or agent's says whose it is.
    label = f"pack {name}" if tuner.worker else f"pack {name.rsplit('/', 1)[-1]}"
    if cfg.trainer.verbose:
        trials = [(b.trial.trial_id, dict(b.trial.hyperparameters.values)) for b in branches]
        ids = ", ".join(trial_id for trial_id, _ in trials)
        progress.show_trials(
            f"{label}: {len(trials)} trials ({ids}), up to {max(b.epochs for b in branches)} epochs", trials
        )
    try:
        for branch in branches:
            _prepare(branch, tuner, cfg, train, {PACK: pack})
        built = [b for b in branches if b.failure is None]
        packed = _fit(built, cfg, train, val, label) if built else None
        finals = _final_metrics(packed, built, tuner)
        for branch in built:
            _record(branch, tuner, finals.get(branch))
        # Every failed run closed before the oracle hears (it may end the search), and while
        # abandon_trial can still find it (on_trial_end says why it failed).
        for branch in branches:
            if branch.failure is not None and branch.run is not None:
                branch.run.fail(branch.failure)
    except BaseException as err:  # Ctrl-C, or the oracle gone: no trial of the pack ends well
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        for branch in branches:
            if branch.run is not None:  # a branch's own failure (a NaN) says more
                branch.run.fail(branch.failure or describe(err), "FAILED" if branch.failure else status)
                tuner.training_runs.remove(branch.run)
        raise
    # One line per trial as the oracle takes it (on_trial_end), then one for the search.
    with tuner.progress.held() if tuner.progress is not None else contextlib.nullcontext():
        for branch in branches:
            _report(branch, tuner)


def _prepare(branch: Branch, tuner, cfg, train, tags: dict) -> None:
    """The branch's run, model and callbacks; what fails here fails the branch alone."""
    from sweeplab.search import training
    from sweeplab.search.tuning import BestEpochInMemory

    try:
        branch.run = tuner.new_trial_run(branch.trial, tags=tags)
    except Exception as err:
        branch.fail(f"its MLflow run could not be started: {describe(err)}")
        return
    tuner.training_runs.append(branch.run)
    try:
        branch.model = tuner._build_hypermodel(branch.trial.hyperparameters)
        branch.model.optimizer.build(branch.model.trainable_variables)
        # Its metrics' variables now: created while tracing, TF would trace the pack's step twice.
        branch.model._symbolic_build(data_batch=train.element_spec)
    except Exception as err:  # like Keras Tuner: a trial whose model cannot be built failed, for good
        branch.fail(describe(err), trial_module.TrialStatus.FAILED)
        return
    # As unpacked (`TrackedTrials._try_build`): outside tuner.constraints, its run ends FINISHED untrained.
    reason = model_cost.refuse_infeasible(branch.model, branch.run, cfg.tuner.constraints)
    if reason is not None:
        retries.say_infeasible(tuner.oracle, branch.trial.trial_id)
        branch.fail(f"{model_cost.InfeasibleTrial.__name__}: not trained: {reason}", trial_module.TrialStatus.INVALID)
        return
    branch.best = BestEpochInMemory(tuner.oracle.objective, tuner._get_checkpoint_fname(branch.trial.trial_id))
    stopping = [c for c in training.callbacks(cfg.trainer) if isinstance(c, keras.callbacks.EarlyStopping)]
    branch.callbacks = [branch.run.epochs.callback(), branch.best, *stopping]
    for callback in branch.callbacks:
        callback.set_model(branch.model)


def _final_metrics(packed, built: list[Branch], tuner) -> dict:
    """{branch: final metrics} of the branches that trained, their best epoch's weights restored
    (in the model, and in Keras Tuner's checkpoint: Hyperband goes on from it)."""
    from keras_tuner.src import utils

    for branch in [b for b in built if b.failure is None]:
        try:
            branch.best.restore_and_write(branch.model)
            utils.save_json(tuner._get_build_config_fname(branch.trial.trial_id), branch.model.get_build_config())
        except Exception as err:
            branch.fail(f"its best epoch could not be restored: {describe(err)}")
    done = [b for b in built if b.failure is None]
    if not done:
        return {}
    try:
        return evaluate_pack(packed, built, {s: tuner.eval_set(s) for s in ("val", "test")})
    except Exception:  # not said which branch's: each one alone, so that only that one fails
        finals = {}
        for branch in done:
            try:
                finals[branch] = tuner.final_metrics(branch.model)
            except Exception as err:
                branch.fail(f"its evaluation failed: {describe(err)}")
        return finals


def _record(branch: Branch, tuner, final: dict | None) -> None:
    """A trained branch's record handed to the writer thread. Its result goes to the oracle only once
    every branch's record is on its way (`_report`): a chief lost meanwhile holds up no record."""
    if branch.failure is not None:
        return
    branch.best_step = _best_epoch(branch.history, tuner.oracle.objective)
    try:
        if not final:
            raise ValueError("no final metrics")
        tuner.record_trial(
            branch.trial,
            branch.model,
            branch.run,
            final,
            executions=1,
            scored=tuner.oracle.objective.get_value(branch.history[branch.best_step]),
        )
    except Exception as err:
        branch.fail(describe(err))


def _report(branch: Branch, tuner) -> None:
    """The trial's result and end to the oracle."""
    if branch.failure is None:
        step = branch.best_step
        tuner.oracle.update_trial(branch.trial.trial_id, branch.history[step], step=step)
        branch.trial.status = trial_module.TrialStatus.COMPLETED
    else:
        branch.trial.status, branch.trial.message = branch.status, branch.failure
    tuner.on_trial_end(branch.trial)


def _best_epoch(history: list[dict], objective) -> int:
    best = 0
    for epoch, logs in enumerate(history):
        if objective.better_than(objective.get_value(logs), objective.get_value(history[best])):
            best = epoch
    return best


def _fit(branches: list[Branch], cfg, train, val, label: str) -> PackedModel:
    """Train the branches together. One whose step raises while traced fails alone; an error
    the fused step raises while it runs names no branch: the branches still training fail
    with it, those already done are kept, and the search goes on. Keras' own epoch line (every
    branch's metrics) gives way to the pack's (`progress.PackEpochs`)."""
    from sweeplab.search.tuning import StopWhenLeaseLost  # tuning imports this module

    def failed(index: int, step: str, err: Exception) -> None:
        branches[index].fail(f"its {step} step failed: {describe(err)}")

    packed = PackedModel([b.model for b in branches], on_error=failed)
    packed.compile(optimizer=keras.optimizers.SGD(), steps_per_execution=cfg.trainer.steps_per_execution)
    tuner, epochs = branches[0].tuner, max(b.epochs for b in branches)
    shown = progress.PackEpochs(tuner.progress, label, epochs, cfg.trainer.verbose)
    try:
        packed.fit(
            train,
            validation_data=val,
            epochs=epochs,
            initial_epoch=branches[0].initial_epoch,
            callbacks=[StopWhenLeaseLost(tuner), PackMonitor(branches, shown)],
            verbose=0,
            shuffle=False,
        )
    except Exception as err:
        for branch in branches:
            if branch.active:
                branch.fail(f"the pack's training step failed: {describe(err)}")
    finally:
        shown.close()
    return packed


def evaluate_pack(packed: PackedModel, branches: list[Branch], eval_sets: dict) -> dict:
    """{branch: final metrics} of the pack's branches as they are now (their best epochs' weights):
    one evaluation per split, with the test function the pack traced for validation."""
    results: dict = {b: {} for b in branches if b.failure is None}
    for split in metric_names.FINAL_PREFIXES:
        scores = packed.evaluate(eval_sets[split], verbose=0, return_dict=True)
        for index, branch in enumerate(branches):
            if branch in results:
                results[branch].update(metric_names.final_metrics(split, branch_logs(scores, index)))
    return {b: metrics for b, metrics in results.items() if b.failure is None}
