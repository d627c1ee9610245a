"""One search, end to end, as named steps: validate the config, prepare the
data and family, start the search run, search, summarise, ensemble.

The flow reads top to bottom in `run_validated`; each step is a function below it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sweeplab.config.identity import search_key
from sweeplab.config.schema import AppConfig
from sweeplab.config.validation import validate
from sweeplab.errors import AllTrialsFailedError, SearchStoppedError, WorkerFailedError
from sweeplab.search import progress
from sweeplab.search.preparation import prepare, tuner_location


@dataclass
class SearchResult:
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    best_run_id: str | None
    best_score: float | None
    finished: int
    failed: int
    ensemble_run_id: str | None = None


@dataclass
class Summary:
    """What a finished search left in MLflow."""

    runs: list  # finished trial runs, best first
    failures: list[tuple[str, str]]  # (trial id, why)
    best_score: float | None


def run(cfg, overrides: list[str] | None = None, build_ensemble: bool = True) -> SearchResult:
    """Validate `cfg` (a composed Hydra config), run its search, print the leaderboard.

    `build_ensemble=False` leaves the ensemble to whoever runs several searches
    (a multirun builds one across all its jobs when they are done).
    """
    return run_validated(validate(cfg), overrides or [], build_ensemble)


def run_validated(cfg: AppConfig, overrides: list[str], build_ensemble: bool = True) -> SearchResult:
    dataset, family = prepare(cfg)
    # TensorFlow and MLflow load only once the data fits the family and the objective.
    from sweeplab.search.tensorflow_import import import_tensorflow_quietly
    from sweeplab.tracking.store import connect

    import_tensorflow_quietly()

    client, uri, experiment_id = connect(cfg.tracking)
    search_run, project = start_search_run(cfg, client, experiment_id, overrides, dataset)
    tuner, stopped = search(cfg, dataset, family, search_run, project)
    summary = summarise(cfg, client, experiment_id, search_run.run_id, project, tuner)
    check_outcome(project, summary, stopped, uri, experiment_id)
    ensemble_run_id = None
    if cfg.ensemble.enabled and build_ensemble:
        ensemble_run_id = build_ensemble_of(cfg, client, experiment_id)
    print(progress.fit(browse_hint(uri, experiment_id)), flush=True)
    best = summary.runs[0] if summary.runs else None
    return SearchResult(
        parent_run_id=search_run.run_id,
        experiment_id=experiment_id,
        tracking_uri=uri,
        best_run_id=best.info.run_id if best else None,
        best_score=summary.best_score,
        finished=len(summary.runs),
        failed=len(summary.failures),
        ensemble_run_id=ensemble_run_id,
    )


def start_search_run(cfg: AppConfig, client, experiment_id: str, overrides: list[str], dataset):
    """(the search's parent run, its name): found again when the same search resumes.

    Keras Tuner's state belongs to the store its trials were logged to: when this
    store has no run of the search (its `mlruns/` deleted, another `tracking.uri`),
    state left on disk is stale and the search starts afresh.
    """
    from omegaconf import OmegaConf

    from sweeplab.tracking import tags
    from sweeplab.tracking.batches import flatten
    from sweeplab.tracking.lineage import log_dataset_inputs, split_datasets
    from sweeplab.tracking.runs import SearchRun

    directory, project = tuner_location(cfg)
    search_run = SearchRun(client, experiment_id, search_key(cfg.resolved), fresh=cfg.tuner.overwrite)
    if not search_run.resumed and not cfg.tuner.overwrite and (Path(directory) / project).exists():
        print(
            progress.fit(
                f"[sweeplab] no run of search {project} in this MLflow store: its Keras Tuner state in "
                f"{directory} belongs to another store; starting the search afresh"
            ),
            flush=True,
        )
    parent_id = search_run.start(
        name=project,
        tags={tags.FAMILY: cfg.family, tags.TUNER: cfg.tuner.kind.value, tags.OVERRIDES: " ".join(overrides)},
        params=flatten({k: v for k, v in cfg.resolved.items() if k != "tracking"}),
        config_yaml=OmegaConf.to_yaml(OmegaConf.create(cfg.resolved)),
    )
    if not search_run.resumed:
        log_dataset_inputs(client, parent_id, split_datasets(dataset))
    print(
        progress.fit(
            f"[sweeplab] {'resuming' if search_run.resumed else 'starting'} search {project} "
            f"(MLflow run {parent_id}, experiment {cfg.tracking.experiment!r})"
        ),
        flush=True,
    )
    return search_run, project


def search(cfg: AppConfig, dataset, family, search_run, project: str):
    """Run Keras Tuner's search; return (the tuner, why it stopped early or None).

    The search run ends FINISHED, KILLED (Ctrl-C) or FAILED, whatever happens.
    """
    from sweeplab.search import chief, packing, reconcile, tuning, warm_start
    from sweeplab.tracking.tags import PACKING

    directory, _ = tuner_location(cfg)
    size, why_not = packing.pack_size(cfg, dataset), packing.why_not_packed(cfg, dataset)
    packs = f"{size} trials per pack" if size > 1 else f"one trial at a time ({why_not or 'tuner.pack=1'})"
    search_run.client.set_tag(search_run.run_id, PACKING, packs)
    print(progress.fit(f"[sweeplab] training {packs}"), flush=True)
    hypermodel = tuning.SweepHyperModel(family, cfg, dataset)
    status = "FAILED"
    stopped = None
    try:
        # A search with no run in this store starts afresh (a new one, or stale state on disk).
        tuner = tuning.make_tuner(
            cfg, hypermodel, search_run, dataset, directory, project, overwrite=not search_run.resumed
        )
        warm_start.warm_start(tuner, cfg, search_run)
        if search_run.resumed:
            reconcile.accept_recorded(tuner)
            tuner.rerecord_unlogged()
        # Other processes train: local workers, agents, a launcher's agents (tuner.launcher=ray|slurm).
        if cfg.tuner.workers != 1 or cfg.tuner.launcher.value != "local":
            chief.serve(tuner, cfg, search_run, Path(directory) / project)
            reconcile.accept_recorded(tuner)  # a worker lost right after the oracle took its result
        else:
            tuner.save()  # Keras Tuner saves it once a trial has ended: a resume of the first one needs it too
            tuning.search(tuner, cfg, dataset)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except WorkerFailedError as err:
        stopped = str(err)
    except RuntimeError as err:
        # Keras Tuner's max_consecutive_failed_trials: report it like any failed search.
        if not tuning.is_failure_limit(err):
            raise
        stopped = (
            f"{str(err).splitlines()[0]} (tuner.max_consecutive_failed_trials="
            f"{cfg.tuner.max_consecutive_failed_trials})"
        )
    finally:
        search_run.end(status)
    return tuner, stopped


def summarise(cfg: AppConfig, client, experiment_id: str, parent_id: str, project: str, tuner) -> Summary:
    """Log the search's progress figure and totals; print its leaderboard and failed trials."""
    from sweeplab.report import pareto
    from sweeplab.report.importance import log_importance
    from sweeplab.report.leaderboard import leaderboard, log_comparison
    from sweeplab.search import tuning
    from sweeplab.tracking import metric_names, plots
    from sweeplab.tracking.batches import log_metrics
    from sweeplab.tracking.model_cost import is_feasible
    from sweeplab.tracking.queries import rank, trial_runs
    from sweeplab.tracking.tags import FAILURE, TRIAL_ID

    objective, maximize = cfg.tuner.objective, cfg.tuner.direction.value == "max"
    finished = trial_runs(client, experiment_id, parent_id)
    # The best is a feasible trial's: one over a tuner.constraints bound known only once trained ranks last.
    runs = sorted(rank(finished, objective, maximize), key=lambda r: not is_feasible(r))
    # Workers' failure messages do not travel back to the oracle; their runs' tags hold them.
    failure_tags = {
        r.data.tags.get(TRIAL_ID): r.data.tags.get(FAILURE, "")
        for r in trial_runs(client, experiment_id, parent_id, status="FAILED")
    }
    # Runs this process could not even mark FAILED (the store refused) say why here.
    reasons = {**failure_tags, **tuner.search_run.unclosed}
    failures = tuning.trial_failures(tuner, reasons, {r.data.tags.get(TRIAL_ID) for r in finished})
    figure = plots.search_progress(tuning.trial_scores(tuner), objective, maximize, project)
    client.log_figure(parent_id, figure, "search_progress.png")
    plots.close(figure)

    # `rank` kept only the runs that logged the objective's metric: the best one has it.
    best_score = runs[0].data.metrics[metric_names.ranking_metric(objective)] if runs else None
    totals = {"trials_finished": len(runs), "trials_failed": len(failures)}
    if best_score is not None:
        totals[metric_names.best(objective)] = best_score
    log_metrics(client, parent_id, totals)

    packs = packs_formed(client, experiment_id, parent_id)
    if packs:
        client.log_text(parent_id, packs, "packs.txt")
    print()
    print(leaderboard(runs, objective, cfg.leaderboard_rows, width=progress.width()))
    log_importance(client, parent_id, runs, objective, maximize, project, fit=progress.fit)
    if cfg.compare_by:
        log_comparison(client, parent_id, runs, cfg.compare_by, project)
    pareto.report_search(cfg, client, experiment_id, parent_id, project)
    if failures:
        print(f"\n{len(failures)} trial(s) failed:")
        for trial_id, reason in failures:
            print(f"  trial {trial_id}: {reason}")
    return Summary(runs, failures, best_score)


def packs_formed(client, experiment_id: str, parent_id: str) -> str:
    """One line per pack of trials trained together (tuner.pack), from the trial runs' tags."""
    from sweeplab.tracking.queries import trial_runs
    from sweeplab.tracking.tags import PACK

    packs = set()
    for status in ("FINISHED", "FAILED"):
        packs |= {
            r.data.tags[PACK]
            for r in trial_runs(client, experiment_id, parent_id, status=status)
            if PACK in r.data.tags
        }
    return "\n".join(sorted(packs))


def check_outcome(project: str, summary: Summary, stopped: str | None, uri: str, experiment_id: str) -> None:
    """Raise when no trial finished or Keras Tuner gave up early (after saying where to look)."""
    if summary.runs and not stopped:
        return
    print(progress.fit(browse_hint(uri, experiment_id)), flush=True)
    reasons = "; ".join(f"trial {t}: {r}" for t, r in summary.failures) or ("none" if summary.runs else "no trial ran")
    if not summary.runs:
        raise AllTrialsFailedError(f"every trial of search {project} failed ({reasons})")
    raise SearchStoppedError(
        f"search {project} stopped early: {stopped}; {len(summary.runs)} trial(s) finished; failed: {reasons}"
    )


def build_ensemble_of(cfg: AppConfig, client, experiment_id: str, whole_experiment: bool = False) -> str | None:
    """Weighted ensembles across every family of the experiment, one per data set and task: only
    the group of this config's search unless `whole_experiment`. Prints each, or why a group has
    none (one line); returns the first one's run id, or None. Fails only when an ensemble that
    could be built was not (a store or download error, a bug)."""
    from sweeplab.ensemble.builder import EnsembleResult, build_groups_for_search
    from sweeplab.errors import EnsembleError
    from sweeplab.tracking.tags import ROLE, SEARCH_KEY

    searches = None
    if not whole_experiment:
        query = f"tags.`{SEARCH_KEY}` = '{search_key(cfg.resolved)}' and tags.`{ROLE}` = 'search'"
        searches = {r.info.run_id for r in client.search_runs([experiment_id], query)} or None
    try:
        outcomes = build_groups_for_search(cfg, client, experiment_id, searches)
    except EnsembleError as err:  # nothing to ensemble: the searches still succeeded
        print(f"\n[sweeplab] no ensemble: {err}", flush=True)
        return None
    if not outcomes:
        print("\n[sweeplab] no ensemble: no finished trial of this search is a candidate", flush=True)
    for outcome in outcomes:
        print(f"\n{progress.fit(outcome.describe())}", flush=True)
    built = [o.run_id for o in outcomes if isinstance(o, EnsembleResult)]
    return built[0] if built else None


def finish_experiment(cfg: AppConfig) -> None:
    """After several searches (a multirun's end): the leaderboard across them all, then one ensemble
    per data set and task. Runs inside Hydra's `on_multirun_end` callback, whose caller turns any
    Exception into a warning and exits 0: an unexpected failure here ends the process with status 1."""
    import traceback

    from sweeplab.errors import SweeplabError, describe
    from sweeplab.report import pareto
    from sweeplab.report.leaderboard import leaderboard
    from sweeplab.tracking.queries import rank, trial_runs
    from sweeplab.tracking.store import connect

    try:
        client, uri, experiment_id = connect(cfg.tracking)
        maximize = cfg.tuner.direction.value == "max"
        runs = rank(trial_runs(client, experiment_id), cfg.tuner.objective, maximize)
        print(f"\n[sweeplab] experiment {cfg.tracking.experiment!r}, all searches")
        print(leaderboard(runs, cfg.tuner.objective, cfg.leaderboard_rows, width=progress.width()))
        pareto.report_across(cfg, client, experiment_id)
        if cfg.ensemble.enabled:
            build_ensemble_of(cfg, client, experiment_id, whole_experiment=True)
        print(progress.fit(browse_hint(uri, experiment_id)))
        sys.stdout.flush()
    except SweeplabError:
        raise  # the callback's boundary prints it in one line and exits 2
    except Exception as err:
        sys.stdout.flush()
        traceback.print_exc()
        raise SystemExit(f"sweeplab: the multirun's searches finished, but its end failed: {describe(err)}") from err


def browse_hint(uri: str, experiment_id: str) -> str:
    from sweeplab.tracking.ui import browse_hint as hint

    return hint(uri, experiment_id)
