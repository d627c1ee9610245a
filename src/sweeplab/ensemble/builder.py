"""Ensembles over an experiment's best finished trials, across families: one per data set and task.

Candidates are the finished trial runs by the objective on validation (all families, or
filtered by family, search run or tag), grouped by data set and task, trials that are the same
trained model counted once (`groups`); each group's top `top_k` are averaged, their class scores
made comparable first where they were trained on other encodings of the same labels
(`encoding`). Weights come from the trials' saved validation predictions only
(`predictions.npz`, see `sweeplab.tracking.predictions`); the test split is scored once, to
report. An ensemble is logged as its own run (tag `sweeplab.role=ensemble`, and
`sweeplab.ensemble_group` naming its group) with a pyfunc model under `model`, and registered in
the Model Registry: under the given name when the candidates are one group, under
`<name>-<group>` when they are several.

`build` makes one ensemble of one group; `build_groups` one per group, skipping (with one line
saying why) a group that cannot make one. `python -m sweeplab.ensemble --help` for the command.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from sweeplab.errors import EnsembleError
from sweeplab.tracking import metric_names
from sweeplab.tracking.queries import DEFAULT_OBJECTIVE

CHAMPION = "champion"  # the registry alias of the best ensemble version on validation
GROUP = "sweeplab.ensemble_group"  # tag: which data set and task the ensemble averages


@dataclass
class Filters:
    """Which finished trials may be candidates; empty means all."""

    families: list[str] = field(default_factory=list)
    search_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # Trials the oracle pruned (scored by a partly trained model) are candidates only if asked for.
    include_pruned: bool = False

    def describe(self) -> str:
        parts = [f"family in {self.families}"] if self.families else []
        parts += [f"search run {self.search_run_id}"] if self.search_run_id else []
        parts += [f"tag {k}={v}" for k, v in self.tags.items()]
        return f" matching {', '.join(parts)}" if parts else ""


@dataclass
class Settings:
    """How candidates are ranked and weighted."""

    objective: str = DEFAULT_OBJECTIVE
    maximize: bool = True
    top_k: int = 5
    method: str = "greedy"
    max_steps: int = 20
    # {trial metric: the most its members (weight > 0) may sum to}: params, latency_ms.
    budget: dict[str, float] = field(default_factory=dict)

    def params(self) -> dict:
        return {
            "objective": self.objective,
            "direction": "max" if self.maximize else "min",
            "method": self.method,
            "top_k": self.top_k,
            "max_steps": self.max_steps,
            **{f"max_{metric}": limit for metric, limit in self.budget.items()},
        }


@dataclass
class Member:
    run_id: str
    name: str
    family: str
    weight: float
    normalised: list[str] = field(default_factory=list)  # heads whose class scores were normalised

    @property
    def label(self) -> str:
        return f"{self.family}/{self.name}"


@dataclass
class EnsembleResult:
    run_id: str
    members: list[Member]  # weight > 0, heaviest first
    objective: str
    val: dict[str, float]
    test: dict[str, float]
    best_member: Member
    best_member_val: dict[str, float]
    best_member_test: dict[str, float]
    model_uri: str
    registered: str | None  # "name version N"
    group: str | None = None  # the group's label, when the candidates were several groups
    duplicates: int = 0  # candidates counted once as the same trained model as another

    def describe(self) -> str:
        name = metric_names.metric_of(self.objective)
        of = f" of {self.group}" if self.group else ""
        lines = [f"Ensemble{of} (MLflow run {self.run_id}; model {self.model_uri})"]
        lines += [
            f"  {m.weight:.3f}  {m.label}  ({m.run_id})" + ("  scores normalised" if m.normalised else "")
            for m in self.members
        ]
        lines.append(
            f"  test {name}: ensemble {self.test[name]:.4f} vs best single model "
            f"{self.best_member_test[name]:.4f} ({self.best_member.label}); "
            f"validation {self.val[name]:.4f} vs {self.best_member_val[name]:.4f}"
        )
        if self.duplicates:
            lines.append(
                f"  {self.duplicates} trial(s) counted once: the same trained model as another candidate "
                "(family, hyperparameters, data and seed)"
            )
        if self.registered:
            lines.append(f"  registered as {self.registered}")
        return "\n".join(lines)


@dataclass
class Skipped:
    """A group that could not make an ensemble, and why."""

    group: str
    reason: str

    def describe(self) -> str:
        return f"[sweeplab] no ensemble of {self.group}: {self.reason}"


@dataclass
class Downloaded:
    """A candidate's saved predictions and logged model, on local disk."""

    run: object
    saved: object  # predictions.Predictions
    keras_file: Path
    model_dir: Path


@dataclass
class Part:
    """Downloaded candidates that one ensemble may average (one `encoding.signature`)."""

    label: str
    members: list[Downloaded]
    group: object  # groups.Group
    reason: str | None = None  # why it cannot make an ensemble


def candidate_runs(
    client, experiment_id: str, objective: str, maximize: bool, filters: Filters, budget: dict | None = None
) -> list:
    """Finished, feasible trial runs passing `filters` (and each within `budget` alone, having logged
    what it bounds), best first by the objective measured on the validation split (`final_val_*`),
    where the members' weights are chosen too: not by a training-split score."""
    from sweeplab.tracking.model_cost import is_feasible
    from sweeplab.tracking.queries import rank, trial_runs
    from sweeplab.tracking.tags import FAMILY, PRUNED

    runs = trial_runs(client, experiment_id, filters.search_run_id)
    runs = [
        r
        for r in runs
        if (not filters.families or r.data.tags.get(FAMILY) in filters.families)
        and all(r.data.tags.get(k) == v for k, v in filters.tags.items())
        and is_feasible(r)
        and (filters.include_pruned or PRUNED not in r.data.tags)
        and all(r.data.metrics.get(metric, float("inf")) <= limit for metric, limit in (budget or {}).items())
    ]
    return rank(runs, objective, maximize, on_validation=True)


def build(
    client,
    experiment_id: str,
    *,
    objective: str = DEFAULT_OBJECTIVE,
    maximize: bool = True,
    top_k: int = 5,
    method: str = "greedy",
    max_steps: int = 20,
    filters: Filters | None = None,
    registered_model: str | None = None,
    budget: dict[str, float] | None = None,
) -> EnsembleResult:
    """Choose, log and (if named) register one ensemble; the candidates must be one data set and
    task (`build_groups` makes one per group). Nothing is logged on error."""
    from sweeplab.ensemble.groups import group_candidates

    settings = Settings(objective, maximize, top_k, method, max_steps, budget or {})
    filters = filters or Filters()
    _check_settings(settings)
    ranked = _ranked_candidates(client, experiment_id, settings, filters)
    groups = group_candidates(client, ranked)
    if len(groups) > 1:
        raise EnsembleError(
            f"candidates{filters.describe()} are {len(groups)} data sets or tasks "
            f"({', '.join(g.label for g in groups)}); choose one with --family, --search or --tag, "
            "or build one ensemble per data set and task (the `sweeplab ensemble` command does)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        parts = _parts(client, groups[0], settings.top_k, Path(tmp))
        if parts[0].reason:
            raise EnsembleError(parts[0].reason)
        if len(parts) > 1:
            raise EnsembleError(_disagreement(parts[0].members[0], parts[1].members[0]))
        return _build_part(client, experiment_id, parts[0], settings, registered_model, labelled=False)


def build_groups(
    client,
    experiment_id: str,
    settings: Settings,
    *,
    filters: Filters | None = None,
    registered_model: str | None = None,
    searches: set[str] | None = None,
) -> list:
    """One ensemble per data set and task among the candidates (only groups holding a trial of
    `searches`, when given): an `EnsembleResult` each, or a `Skipped` saying why a group could not
    make one. Raises EnsembleError when there is no candidate at all; a failure to build a
    possible ensemble (a download, a store write) raises as it is."""
    from sweeplab.ensemble.groups import group_candidates

    filters = filters or Filters()
    _check_settings(settings)
    groups = group_candidates(client, _ranked_candidates(client, experiment_id, settings, filters))
    chosen = [g for g in groups if searches is None or g.searches & searches]
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        parts = [part for group in chosen for part in _parts(client, group, settings.top_k, Path(tmp))]
        several = len(groups) > 1 or len(parts) > len(chosen)
        for part in parts:
            why = part.reason or _too_few(part, settings.top_k)
            if why:
                outcomes.append(Skipped(part.label, why))
                continue
            name = f"{registered_model}-{part.label}" if registered_model and several else registered_model
            try:
                outcomes.append(_build_part(client, experiment_id, part, settings, name, labelled=several))
            except EnsembleError as err:  # raised before anything is logged: the group cannot make one
                outcomes.append(Skipped(part.label, str(err)))
    return outcomes


def _too_few(part: Part, top_k: int) -> str | None:
    """Why a group's distinct candidates cannot make an ensemble (fewer than two, unless top_k is 1)."""
    needed = min(2, top_k)
    if len(part.members) >= needed:
        return None
    duplicates = len(part.group.duplicates)
    counted = f" ({duplicates} more counted once as the same trained model)" if duplicates else ""
    return (
        f"{len(part.members)} distinct candidate(s) with a logged model and predictions{counted}; "
        f"an ensemble needs at least {needed}"
    )


def _check_settings(settings: Settings) -> None:
    from sweeplab.ensemble import selection

    if settings.top_k < 1:
        raise EnsembleError(f"ensemble.top_k: got {settings.top_k}; expected an integer >= 1")
    if settings.method not in selection.METHODS:
        raise EnsembleError(f"ensemble.method: got {settings.method!r}; expected one of {list(selection.METHODS)}")


def _ranked_candidates(client, experiment_id: str, settings: Settings, filters: Filters) -> list:
    """`candidate_runs`, refusing an experiment with none."""
    ranked = candidate_runs(client, experiment_id, settings.objective, settings.maximize, filters, settings.budget)
    if not ranked:
        experiment = client.get_experiment(experiment_id).name
        within = "".join(f", {m} <= {v:g}" for m, v in settings.budget.items())
        raise EnsembleError(
            f"experiment {experiment!r} has no finished trials{filters.describe()}{within} with a final "
            f"{settings.objective}; nothing to ensemble"
        )
    return ranked


def _download_member(client, run, folder: Path) -> Downloaded | None:
    """The trial's predictions and model on disk, or None if it lacks its predictions or a logged model."""
    from sweeplab.tracking import predictions
    from sweeplab.tracking.logged_models import download_model

    if predictions.ARTIFACT not in {a.path for a in client.list_artifacts(run.info.run_id)}:
        return None
    target = folder / run.info.run_id
    target.mkdir(parents=True)
    model_dir = download_model(client, run, target / "model")
    keras_files = sorted(model_dir.rglob("*.keras")) if model_dir else []
    if not keras_files:
        return None
    npz = client.download_artifacts(run.info.run_id, predictions.ARTIFACT, str(target))
    return Downloaded(run, predictions.Predictions.load(npz), keras_files[0], model_dir)


def _parts(client, group, top_k: int, folder: Path) -> list[Part]:
    """The group's first `top_k` distinct candidates that logged a model and predictions, split by
    `encoding.signature` (candidates whose predictions disagree in heads, shapes or labels cannot be
    averaged): the best candidate's part first, each other part labelled with its signature."""
    from sweeplab.ensemble.encoding import signature

    downloaded = []
    for run in group.runs:
        member = _download_member(client, run, folder)
        if member is not None:
            downloaded.append(member)
        if len(downloaded) == top_k:
            break
    if not downloaded:
        reason = (
            f"none of the {len(group.runs)} distinct finished trials has both a logged model and "
            "predictions.npz (trials need tracking.log_models=true)"
        )
        return [Part(group.label, [], group, reason)]
    by_signature: dict[str, list[Downloaded]] = {}
    for member in downloaded:
        by_signature.setdefault(signature(member.saved), []).append(member)
    return [
        Part(group.label if i == 0 else f"{group.label}-{key[:6]}", members, group)
        for i, (key, members) in enumerate(by_signature.items())
    ]


def _disagreement(reference: Downloaded, other: Downloaded) -> str:
    """Why `other`'s predictions cannot be averaged with `reference`'s."""
    from sweeplab.ensemble.encoding import SPLITS

    ref, run, ref_run = reference.saved, other.run, reference.run
    if other.saved.shapes() != ref.shapes():
        return (
            f"candidates disagree in output shape: run {run.info.run_id} ({run.info.run_name}) has "
            f"{other.saved.shapes()}, expected {ref.shapes()} as run {ref_run.info.run_id} "
            f"({ref_run.info.run_name}); choose candidates of one task with --family, --search or --tag"
        )
    for split in SPLITS:
        for head in ref.heads:
            if not _same_labels(ref, other.saved, split, head):
                return (
                    f"candidates were scored on different {split} data (head {head!r}): run "
                    f"{run.info.run_id} vs run {ref_run.info.run_id}; choose candidates of one data "
                    "set and split with --family, --search or --tag"
                )
    return f"candidates disagree in their predictions: run {run.info.run_id} vs run {ref_run.info.run_id}"


def _same_labels(first, second, split: str, head: str) -> bool:
    """The same targets, class labels compared whatever their encoding."""
    import numpy as np

    from sweeplab.ensemble.encoding import labels

    mine = labels(first.targets[split][head], first.outputs[split][head])
    theirs = labels(second.targets[split][head], second.outputs[split][head])
    return mine.shape == theirs.shape and bool(np.array_equal(mine, theirs))


def _build_part(client, experiment_id: str, part: Part, settings: Settings, registered_model, labelled: bool):
    """Weights on validation, the run and model logged, registered if named: the part's EnsembleResult."""
    from sweeplab.ensemble.encoding import comparable

    scores = comparable([m.saved for m in part.members])
    costs = [{k: m.run.data.metrics[k] for k in settings.budget} for m in part.members]
    chosen, metrics = _choose(scores, settings, costs)
    members = [
        Member(m.run.info.run_id, m.run.info.run_name, _family(m.run), float(w), heads)
        for m, w, heads in zip(part.members, chosen.weights, scores.normalised)
    ]
    best = members[chosen.best_member]
    kept = [i for i in sorted(range(len(members)), key=lambda i: -members[i].weight) if members[i].weight > 0]
    logged = _Logged(
        members=[members[i] for i in kept],
        files=[part.members[i].keras_file for i in kept],
        signature_source=part.members[kept[0]].model_dir,
        heads=part.members[0].saved.heads,
        params={
            **{f"ensemble.{k}": str(v) for k, v in settings.params().items()},
            "ensemble.group": part.label,
            "ensemble.candidates": str(len(members)),
            "ensemble.candidate_runs": ",".join(m.run_id for m in members),
            "ensemble.duplicates": str(len(part.group.duplicates)),
        },
        label=part.label,
    )
    run_id = _log(client, experiment_id, logged, metrics)
    registered = None
    if registered_model:
        registered = _register(client, run_id, registered_model, logged.members, settings, part.label)
    return EnsembleResult(
        run_id=run_id,
        members=logged.members,
        objective=settings.objective,
        val=metrics["ensemble_val"],
        test=metrics["ensemble_test"],
        best_member=best,
        best_member_val=metrics["best_member_val"],
        best_member_test=metrics["best_member_test"],
        model_uri=f"runs:/{run_id}/model",
        registered=registered,
        group=part.label if labelled else None,
        duplicates=len(part.group.duplicates),
    )


def _family(run) -> str:
    from sweeplab.tracking.tags import FAMILY

    return run.data.tags.get(FAMILY, "")


def _choose(scores, settings: Settings, costs: list[dict]) -> tuple:
    """(the weights chosen on validation within the budget, the metrics to log by prefix): the
    ensemble's and the best single member's on validation and on test; the test split is scored
    once, to report."""
    from sweeplab.ensemble import selection

    chosen = selection.select(
        scores.outputs["val"],
        scores.targets["val"],
        settings.objective,
        settings.maximize,
        settings.method,
        settings.max_steps,
        selection.Budget(settings.budget, costs) if settings.budget else None,
    )
    test_outputs, test_targets = scores.outputs["test"], scores.targets["test"]
    alone = [float(i == chosen.best_member) for i in range(len(test_outputs))]
    metrics = {
        "ensemble_val": chosen.val_metrics,
        "ensemble_test": selection.evaluate(selection.average(test_outputs, chosen.weights), test_targets),
        "best_member_val": chosen.best_member_val_metrics,
        "best_member_test": selection.evaluate(selection.average(test_outputs, alone), test_targets),
    }
    if settings.budget:  # what the members (weight > 0) cost together: `ensemble_params`, ...
        used = [c for c, w in zip(costs, chosen.weights) if w > 0]
        metrics["ensemble"] = {metric: float(sum(c[metric] for c in used)) for metric in settings.budget}
    return chosen, metrics


@dataclass
class _Logged:
    """What an ensemble run holds: members of weight > 0 (heaviest first) and their files."""

    members: list[Member]
    files: list[Path]
    signature_source: Path  # a member's model folder, whose input signature the ensemble shares
    heads: list[str]
    params: dict[str, str]
    label: str


def _log(client, experiment_id: str, logged: _Logged, metrics: dict) -> str:
    """The ensemble's run: settings and members as params, a weights figure, the model, then the metrics."""
    from sweeplab.ensemble.plots import ensemble_weights
    from sweeplab.tracking.batches import log_metrics, log_params
    from sweeplab.tracking.plots import close
    from sweeplab.tracking.tags import METHOD, ROLE

    members = logged.members
    run = client.create_run(
        experiment_id,
        run_name=f"ensemble-{len(members)}",
        tags={ROLE: "ensemble", METHOD: logged.params["ensemble.method"], GROUP: logged.label},
    )
    run_id = run.info.run_id
    try:
        params = dict(logged.params)
        params["members"] = ",".join(m.run_id for m in members)
        params["weights"] = ",".join(f"{m.weight:.6f}" for m in members)
        for i, m in enumerate(members):
            params[f"member_{i}.run_id"] = m.run_id
            params[f"member_{i}.weight"] = f"{m.weight:.6f}"
            params[f"member_{i}.family"] = m.family
            params[f"member_{i}.normalised"] = ",".join(m.normalised) or "none"
        log_params(client, run_id, params)
        figure = ensemble_weights([m.label for m in members], [m.weight for m in members], "ensemble weights")
        client.log_figure(run_id, figure, "ensemble_weights.png")
        close(figure)
        model_id = _log_model(client, experiment_id, run_id, logged)
        # After the model, so that its metrics are linked to it.
        log_metrics(
            client,
            run_id,
            {f"{prefix}_{name}": v for prefix, values in metrics.items() for name, v in values.items()},
            model_id=model_id,
        )
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _log_model(client, experiment_id: str, run_id: str, logged: _Logged) -> str:
    """A `keras_average` pyfunc over the members' .keras files, as the run's logged model: it
    normalises the class scores of the members the weights were chosen with normalised."""
    import mlflow
    from mlflow.models import Model

    from sweeplab.tracking.logged_models import AVERAGE_CODE, log_model, model_requirements, named_inputs

    signature = Model.load(str(logged.signature_source)).signature
    config = {
        "weights": [m.weight for m in logged.members],
        "heads": list(logged.heads),
        "inputs": named_inputs(signature),
        "normalise": [list(m.normalised) for m in logged.members],
    }

    def save(path, metadata):
        with warnings.catch_warnings():
            # The members' signature is reused, so MLflow's advice to add an input example does not apply.
            warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
            mlflow.pyfunc.save_model(
                path,
                python_model=str(AVERAGE_CODE),
                artifacts={f"member_{i}": str(f) for i, f in enumerate(logged.files)},
                model_config=config,
                signature=signature,
                mlflow_model=metadata,
                pip_requirements=[f"mlflow=={mlflow.__version__}", *model_requirements()],
            )

    return log_model(client, experiment_id, run_id, save, model_type="ensemble")


def _register(client, run_id: str, name: str, members: list, settings: Settings, group: str) -> str:
    """A new version of registered model `name` for the run's logged model, described by its
    members and weights; the `champion` alias moves to it when it beats the champion on validation."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    try:
        client.create_registered_model(name, description="sweeplab ensembles (weighted averages of trials)")
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    run = client.get_run(run_id)
    model_id = run.outputs.model_outputs[0].model_id
    description = (
        f"Weighted average of {len(members)} trial model(s) on {group}, "
        f"weights chosen on validation ({settings.objective}):\n"
    )
    description += "\n".join(f"- {m.weight:.3f} x {m.label} (run {m.run_id})" for m in members)
    version = client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id, description=description
    )
    label = f"{name} version {version.version}"
    if _beats_champion(client, name, run, settings):
        client.set_registered_model_alias(name, CHAMPION, version.version)
        label += f" (alias {CHAMPION})"
    return label


def _beats_champion(client, name: str, run, settings: Settings) -> bool:
    """Whether this run takes the alias: within the budget (if any), and either no version holds the
    alias yet, the one holding it is outside the budget, or this run's validation score is better."""
    from mlflow.exceptions import MlflowException

    if not within_budget(run, settings.budget):
        return False
    key = f"ensemble_val_{metric_names.metric_of(settings.objective)}"
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return True
    held = client.get_run(champion.run_id)
    if not within_budget(held, settings.budget):
        return True
    best, mine = held.data.metrics.get(key), run.data.metrics.get(key)
    if best is None or mine is None:
        return mine is not None
    return mine > best if settings.maximize else mine < best


def within_budget(ensemble_run, budget: dict[str, float]) -> bool:
    """An ensemble run's members summed (`ensemble_<metric>`) keep within `budget` (unknown: they do not)."""
    metrics = ensemble_run.data.metrics
    return all(metrics.get(f"ensemble_{metric}", float("inf")) <= limit for metric, limit in budget.items())


def settings_of(cfg) -> Settings:
    """The ensemble settings of a search's config."""
    return Settings(
        objective=cfg.tuner.objective,
        maximize=cfg.tuner.direction.value == "max",
        top_k=cfg.ensemble.top_k,
        method=cfg.ensemble.method.value,
        max_steps=cfg.ensemble.max_steps,
        budget=budget_of(cfg.ensemble.max_params, cfg.ensemble.max_latency_ms),
    )


def budget_of(max_params: float | None, max_latency_ms: float | None) -> dict[str, float]:
    """{trial metric: limit} of the budgets that are set."""
    from sweeplab.tracking.model_cost import LATENCY_MS, PARAMS

    limits = {PARAMS: max_params, LATENCY_MS: max_latency_ms}
    return {metric: float(limit) for metric, limit in limits.items() if limit is not None}


def build_groups_for_search(cfg, client, experiment_id: str, searches: set[str] | None = None) -> list:
    """What a search or multirun ends with: `build_groups` with its config's settings."""
    return build_groups(
        client,
        experiment_id,
        settings_of(cfg),
        filters=Filters(include_pruned=cfg.ensemble.include_pruned),
        registered_model=cfg.ensemble.registered_model,
        searches=searches,
    )
