"""One search, end to end: config -> data -> space + family -> tuner ->
tracked trials -> leaderboard.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from sweeplab.errors import AllTrialsFailedError, SearchStoppedError
from sweeplab.schema import AppConfig, check_objective, validate

# Keys that do not change what a search computes, so they do not change its identity.
_NOT_IDENTITY = {
    ("tracking",),
    ("ensemble",),
    ("tuner", "overwrite"),
    ("tuner", "workers"),
    ("state_dir",),
    ("leaderboard_rows",),
    ("compare_by",),
}


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


def search_key(resolved: dict) -> str:
    """A stable hash of everything that defines the search (not where it is logged)."""
    identity = {}
    for group, value in resolved.items():
        if (group,) in _NOT_IDENTITY:
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if (group, k) not in _NOT_IDENTITY}
        identity[group] = value
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run(cfg, overrides: list[str] | None = None, build_ensemble: bool = True) -> SearchResult:
    """Validate `cfg` (a composed Hydra config), run its search, print the leaderboard.

    `build_ensemble=False` leaves the ensemble to whoever runs several searches
    (a multirun builds one across all its jobs when they are done).
    """
    app_cfg = validate(cfg)
    return run_validated(app_cfg, overrides or [], build_ensemble)


def prepare(cfg: AppConfig, quiet: bool = False):
    """(dataset, family) for a validated config: the data loaded, checked against
    the family and the objective, and encoded for the heads."""
    from sweeplab import data as data_module
    from sweeplab.heads import reported_metrics, resolve_heads
    from sweeplab.models import check_compatible, get_family

    dataset = data_module.load(cfg.data, cfg.seed)
    family = get_family(cfg.family)
    check_compatible(family, dataset)
    heads = resolve_heads(dataset, cfg.model, cfg.trainer)
    check_objective(cfg, reported_metrics(heads))
    dataset = dataset.with_one_hot([h.name for h in heads if h.one_hot])
    if not quiet:
        print(f"[sweeplab] data {dataset.summary()}", flush=True)
    return dataset, family


def tuner_location(cfg: AppConfig) -> tuple[str, str]:
    """(directory, project_name) of the search's Keras Tuner state."""
    project = f"{cfg.family}-{cfg.tuner.kind.value}-{search_key(cfg.resolved)}"
    return str(Path(cfg.state_dir) / _safe(cfg.tracking.experiment)), project


def run_validated(cfg: AppConfig, overrides: list[str], build_ensemble: bool = True) -> SearchResult:
    # Heavy imports only once the config is known to be good.
    from omegaconf import OmegaConf

    dataset, family = prepare(cfg)
    # TensorFlow and MLflow load only once the data fits the family and the objective.
    from sweeplab import plots, report, tracking, tuning, workers

    client, uri, experiment_id = tracking.connect(cfg.tracking)
    key = search_key(cfg.resolved)
    directory, project = tuner_location(cfg)
    search_run = tracking.SearchRun(client, experiment_id, key, fresh=cfg.tuner.overwrite)
    parent_id = search_run.start(
        name=project,
        tags={
            tracking.FAMILY: cfg.family,
            tracking.TUNER: cfg.tuner.kind.value,
            tracking.OVERRIDES: " ".join(overrides),
        },
        params=tracking.flatten({k: v for k, v in cfg.resolved.items() if k != "tracking"}),
        config_yaml=OmegaConf.to_yaml(OmegaConf.create(cfg.resolved)),
    )
    print(
        f"[sweeplab] {'resuming' if search_run.resumed else 'starting'} search {project} "
        f"(MLflow run {parent_id}, experiment {cfg.tracking.experiment!r})",
        flush=True,
    )

    hypermodel = tuning.SweepHyperModel(family, cfg, dataset)
    status = "FAILED"
    stopped = None  # why Keras Tuner gave up early, if it did
    try:
        tuner = tuning.make_tuner(cfg, hypermodel, search_run, dataset, directory, project)
        if cfg.tuner.workers > 1:
            workers.search(tuner, cfg.resolved, parent_id, cfg.tuner.workers, Path(directory) / project)
        else:
            tuning.search(tuner, cfg, dataset)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except workers.WorkerFailedError as err:
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

    maximize = cfg.tuner.direction.value == "max"
    runs = report.rank(tracking.trial_runs(client, experiment_id, parent_id), cfg.tuner.objective, maximize)
    # Workers' failure messages do not travel back to the oracle; their runs' tags hold them.
    failure_tags = {
        r.data.tags.get(tracking.TRIAL_ID): r.data.tags.get(tracking.FAILURE, "")
        for r in tracking.trial_runs(client, experiment_id, parent_id, status="FAILED")
    }
    failures = tuning.trial_failures(tuner, failure_tags)
    scores = tuning.trial_scores(tuner)
    figure = plots.search_progress(scores, cfg.tuner.objective, maximize, project)
    client.log_figure(parent_id, figure, "search_progress.png")
    plots.close(figure)
    best = runs[0] if runs else None
    objective_key = f"final_{cfg.tuner.objective}" if cfg.tuner.objective.startswith("val_") else None
    summary = {"trials_finished": len(runs), "trials_failed": len(failures)}
    if best is not None and objective_key in best.data.metrics:
        summary[f"best_{cfg.tuner.objective}"] = best.data.metrics[objective_key]
    tracking.log_metrics(client, parent_id, summary)

    print()
    print(report.leaderboard(runs, cfg.tuner.objective, cfg.leaderboard_rows))
    if cfg.compare_by:
        report.log_comparison(client, parent_id, runs, cfg.compare_by, project)
    if failures:
        print(f"\n{len(failures)} trial(s) failed:")
        for trial_id, reason in failures:
            print(f"  trial {trial_id}: {reason}")

    browse = f"\nBrowse the runs: make ui   (or: mlflow ui --backend-store-uri '{tracking.display_uri(uri)}')"
    reasons = "; ".join(f"trial {t}: {r}" for t, r in failures) or "no trial ran"
    if not runs or stopped:
        print(browse, flush=True)
    if not runs:
        raise AllTrialsFailedError(f"every trial of search {project} failed ({reasons})")
    if stopped:
        raise SearchStoppedError(
            f"search {project} stopped early: {stopped}; {len(runs)} trial(s) finished; failed: {reasons}"
        )
    ensemble_run_id = None
    if cfg.ensemble.enabled and build_ensemble:
        from sweeplab import ensemble

        built = ensemble.build_for_search(cfg, client, experiment_id)
        ensemble_run_id = built.run_id
        print(f"\n{built.describe()}", flush=True)
    print(browse, flush=True)
    return SearchResult(
        parent_run_id=parent_id,
        experiment_id=experiment_id,
        tracking_uri=uri,
        best_run_id=best.info.run_id if best else None,
        best_score=summary.get(f"best_{cfg.tuner.objective}"),
        finished=len(runs),
        failed=len(failures),
        ensemble_run_id=ensemble_run_id,
    )


def finish_experiment(cfg: AppConfig) -> None:
    """After several searches: the leaderboard across them all, then one ensemble."""
    from sweeplab import ensemble, report, tracking

    client, uri, experiment_id = tracking.connect(cfg.tracking)
    maximize = cfg.tuner.direction.value == "max"
    runs = report.rank(tracking.trial_runs(client, experiment_id), cfg.tuner.objective, maximize)
    print(f"\n[sweeplab] experiment {cfg.tracking.experiment!r}, all searches")
    print(report.leaderboard(runs, cfg.tuner.objective, cfg.leaderboard_rows))
    if cfg.ensemble.enabled:
        built = ensemble.build_for_search(cfg, client, experiment_id)
        print(f"\n{built.describe()}", flush=True)
    print(f"\nBrowse the runs: make ui   (or: mlflow ui --backend-store-uri '{tracking.display_uri(uri)}')")
    sys.stdout.flush()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
