"""Ensembles over an experiment's best finished trials, across families.

Candidates are the top `top_k` finished trial runs by the objective (all
families, or filtered by family, search run or tag). Weights come from the
trials' saved validation predictions only (`predictions.npz`, see
`sweeplab.tracking.predictions`); the test split is scored once, to report. The
ensemble is logged as its own run (tag `sweeplab.role=ensemble`) with a
pyfunc model under `model` and registered in the Model Registry.

`python -m sweeplab.ensemble --help` for the command (`cli.py`).
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


@dataclass
class Filters:
    """Which finished trials may be candidates; empty means all."""

    families: list[str] = field(default_factory=list)
    search_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"family in {self.families}"] if self.families else []
        parts += [f"search run {self.search_run_id}"] if self.search_run_id else []
        parts += [f"tag {k}={v}" for k, v in self.tags.items()]
        return f" matching {', '.join(parts)}" if parts else ""


@dataclass
class Member:
    run_id: str
    name: str
    family: str
    weight: float

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

    def describe(self) -> str:
        name = metric_names.metric_of(self.objective)
        lines = [f"Ensemble (MLflow run {self.run_id}; model {self.model_uri})"]
        lines += [f"  {m.weight:.3f}  {m.label}  ({m.run_id})" for m in self.members]
        lines.append(
            f"  test {name}: ensemble {self.test[name]:.4f} vs best single model "
            f"{self.best_member_test[name]:.4f} ({self.best_member.label}); "
            f"validation {self.val[name]:.4f} vs {self.best_member_val[name]:.4f}"
        )
        if self.registered:
            lines.append(f"  registered as {self.registered}")
        return "\n".join(lines)


def candidate_runs(client, experiment_id: str, objective: str, maximize: bool, filters: Filters) -> list:
    """Finished trial runs passing `filters`, best first by the objective measured on the validation
    split (`final_val_*`), where the members' weights are chosen too: not by a training-split score."""
    from sweeplab.tracking.queries import rank, trial_runs
    from sweeplab.tracking.tags import FAMILY

    runs = trial_runs(client, experiment_id, filters.search_run_id)
    runs = [
        r
        for r in runs
        if (not filters.families or r.data.tags.get(FAMILY) in filters.families)
        and all(r.data.tags.get(k) == v for k, v in filters.tags.items())
    ]
    return rank(runs, objective, maximize, on_validation=True)


def _download_member(client, run, folder: Path):
    """(Predictions, path of the member's .keras file, its model folder), or None if the
    trial lacks its predictions or a logged model."""
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
    return predictions.Predictions.load(npz), keras_files[0], model_dir


def _check_compatible(runs: list, saved: list) -> None:
    """All candidates must predict the same heads, shapes and targets."""
    import numpy as np

    reference, ref_run = saved[0], runs[0]
    for run, other in zip(runs[1:], saved[1:]):
        if other.shapes() != reference.shapes():
            raise EnsembleError(
                f"candidates disagree in output shape: run {run.info.run_id} ({run.info.run_name}) has "
                f"{other.shapes()}, expected {reference.shapes()} as run {ref_run.info.run_id} "
                f"({ref_run.info.run_name}); choose candidates of one task with --family, --search or --tag"
            )
        for split in ("val", "test"):
            for head in reference.heads:
                if not np.array_equal(other.targets[split][head], reference.targets[split][head]):
                    raise EnsembleError(
                        f"candidates were scored on different {split} data (head {head!r}): run "
                        f"{run.info.run_id} vs run {ref_run.info.run_id}; choose candidates of one data "
                        "set and split with --family, --search or --tag"
                    )


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
) -> EnsembleResult:
    """Choose, log and (if named) register an ensemble; nothing is logged on error."""
    filters = filters or Filters()
    _check_settings(top_k, method)
    ranked = _ranked_candidates(client, experiment_id, objective, maximize, filters)
    settings = {
        "objective": objective,
        "direction": "max" if maximize else "min",
        "method": method,
        "top_k": top_k,
        "max_steps": max_steps,
    }
    with tempfile.TemporaryDirectory() as tmp:
        runs, saved, files, model_dirs = _download_members(client, ranked, top_k, Path(tmp), filters)
        settings["candidates"] = len(runs)
        chosen, metrics = _choose(saved, objective, maximize, method, max_steps)
        members = _members(runs, chosen.weights)
        best = members[chosen.best_member]
        members, files, model_dirs = _heaviest_first(members, files, model_dirs)
        run_id = _log(client, experiment_id, members, files, model_dirs[0], saved[0].heads, settings, metrics)
    registered = _register(client, run_id, registered_model, members, objective, maximize) if registered_model else None
    return EnsembleResult(
        run_id=run_id,
        members=members,
        objective=objective,
        val=metrics["ensemble_val"],
        test=metrics["ensemble_test"],
        best_member=best,
        best_member_val=metrics["best_member_val"],
        best_member_test=metrics["best_member_test"],
        model_uri=f"runs:/{run_id}/model",
        registered=registered,
    )


def _check_settings(top_k: int, method: str) -> None:
    from sweeplab.ensemble import selection

    if top_k < 1:
        raise EnsembleError(f"ensemble.top_k: got {top_k}; expected an integer >= 1")
    if method not in selection.METHODS:
        raise EnsembleError(f"ensemble.method: got {method!r}; expected one of {list(selection.METHODS)}")


def _ranked_candidates(client, experiment_id: str, objective: str, maximize: bool, filters: Filters) -> list:
    """`candidate_runs`, refusing an experiment with none."""
    ranked = candidate_runs(client, experiment_id, objective, maximize, filters)
    if not ranked:
        experiment = client.get_experiment(experiment_id).name
        raise EnsembleError(
            f"experiment {experiment!r} has no finished trials{filters.describe()} with a final {objective}; "
            "nothing to ensemble"
        )
    return ranked


def _download_members(client, ranked: list, top_k: int, folder: Path, filters: Filters) -> tuple[list, ...]:
    """(runs, their predictions, .keras files, model folders) of the first `top_k` ranked trials
    that logged both a model and predictions; they must be compatible."""
    runs, saved, files, model_dirs = [], [], [], []
    for run in ranked:
        downloaded = _download_member(client, run, folder)
        if downloaded is None:
            continue  # trials logged without a model or predictions
        runs.append(run)
        saved.append(downloaded[0])
        files.append(downloaded[1])
        model_dirs.append(downloaded[2])
        if len(runs) == top_k:
            break
    if not runs:
        raise EnsembleError(
            f"none of the {len(ranked)} finished trials{filters.describe()} has both a logged model and "
            "predictions.npz (trials need tracking.log_models=true)"
        )
    _check_compatible(runs, saved)
    return runs, saved, files, model_dirs


def _choose(saved: list, objective: str, maximize: bool, method: str, max_steps: int) -> tuple:
    """(the weights chosen on validation, the metrics to log by prefix): the ensemble's and the best
    single member's on validation and on test; the test split is scored once, to report."""
    from sweeplab.ensemble import selection

    val_outputs = [p.outputs["val"] for p in saved]
    chosen = selection.select(val_outputs, saved[0].targets["val"], objective, maximize, method, max_steps)
    test_outputs, test_targets = [p.outputs["test"] for p in saved], saved[0].targets["test"]
    alone = [float(i == chosen.best_member) for i in range(len(saved))]
    metrics = {
        "ensemble_val": chosen.val_metrics,
        "ensemble_test": selection.evaluate(selection.average(test_outputs, chosen.weights), test_targets),
        "best_member_val": chosen.best_member_val_metrics,
        "best_member_test": selection.evaluate(selection.average(test_outputs, alone), test_targets),
    }
    return chosen, metrics


def _members(runs: list, weights) -> list[Member]:
    from sweeplab.tracking.tags import FAMILY

    return [
        Member(r.info.run_id, r.info.run_name, r.data.tags.get(FAMILY, ""), float(w)) for r, w in zip(runs, weights)
    ]


def _heaviest_first(members: list[Member], files: list, model_dirs: list) -> tuple[list, list, list]:
    """The members of weight > 0, heaviest first, with their .keras files and model folders."""
    kept = [i for i in sorted(range(len(members)), key=lambda i: -members[i].weight) if members[i].weight > 0]
    return [members[i] for i in kept], [files[i] for i in kept], [model_dirs[i] for i in kept]


def _log(client, experiment_id, members, member_files, signature_source, heads, settings, metrics) -> str:
    """The ensemble's run: settings and members as params, a weights figure, the model, then the metrics."""
    from sweeplab.ensemble.plots import ensemble_weights
    from sweeplab.tracking.batches import log_metrics, log_params
    from sweeplab.tracking.plots import close
    from sweeplab.tracking.tags import METHOD, ROLE

    run = client.create_run(
        experiment_id,
        run_name=f"ensemble-{len(members)}",
        tags={ROLE: "ensemble", METHOD: settings["method"]},
    )
    run_id = run.info.run_id
    try:
        params = {f"ensemble.{k}": str(v) for k, v in settings.items()}
        params["members"] = ",".join(m.run_id for m in members)
        params["weights"] = ",".join(f"{m.weight:.6f}" for m in members)
        for i, m in enumerate(members):
            params.update(
                {
                    f"member_{i}.run_id": m.run_id,
                    f"member_{i}.weight": f"{m.weight:.6f}",
                    f"member_{i}.family": m.family,
                }
            )
        log_params(client, run_id, params)
        figure = ensemble_weights([m.label for m in members], [m.weight for m in members], "ensemble weights")
        client.log_figure(run_id, figure, "ensemble_weights.png")
        close(figure)
        model_id = _log_model(client, experiment_id, run_id, members, member_files, signature_source, heads)
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


def _log_model(client, experiment_id, run_id, members, member_files, signature_source, heads) -> str:
    """A `keras_average` pyfunc over the members' .keras files, as the run's logged model."""
    from mlflow.models import Model

    from sweeplab.tracking.logged_models import log_model, save_average

    signature = Model.load(str(signature_source)).signature

    def save(path, metadata):
        with warnings.catch_warnings():
            # The members' signature is reused, so MLflow's advice to add an input example does not apply.
            warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
            save_average(path, metadata, member_files, [m.weight for m in members], heads, signature)

    return log_model(client, experiment_id, run_id, save, model_type="ensemble")


def _register(client, run_id: str, name: str, members: list, objective: str, maximize: bool) -> str:
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
    description = f"Weighted average of {len(members)} trial model(s), weights chosen on validation ({objective}):\n"
    description += "\n".join(f"- {m.weight:.3f} x {m.label} (run {m.run_id})" for m in members)
    version = client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id, description=description
    )
    label = f"{name} version {version.version}"
    if _beats_champion(client, name, run, objective, maximize):
        client.set_registered_model_alias(name, CHAMPION, version.version)
        label += f" (alias {CHAMPION})"
    return label


def _beats_champion(client, name: str, run, objective: str, maximize: bool) -> bool:
    """True when no version holds the alias yet, or this run's validation score is better than its."""
    from mlflow.exceptions import MlflowException

    key = f"ensemble_val_{metric_names.metric_of(objective)}"
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return True
    best = client.get_run(champion.run_id).data.metrics.get(key)
    mine = run.data.metrics.get(key)
    if best is None or mine is None:
        return mine is not None
    return mine > best if maximize else mine < best


def build_for_search(cfg, client, experiment_id: str) -> EnsembleResult:
    """The ensemble `app.run` ends with: all families of the experiment."""
    return build(
        client,
        experiment_id,
        objective=cfg.tuner.objective,
        maximize=cfg.tuner.direction.value == "max",
        top_k=cfg.ensemble.top_k,
        method=cfg.ensemble.method.value,
        max_steps=cfg.ensemble.max_steps,
        registered_model=cfg.ensemble.registered_model,
    )
