"""What a search needs before its first trial: the data set loaded and checked
against the family and the objective, and where its Keras Tuner state lives."""

from __future__ import annotations

from pathlib import Path

from sweeplab.config.identity import search_key
from sweeplab.config.schema import AppConfig
from sweeplab.search import progress


def prepare(cfg: AppConfig, quiet: bool = False):
    """(dataset, family) for a validated config: the data loaded, checked against
    the family and the objective, and encoded for the heads."""
    from sweeplab.config.validation import check_objective
    from sweeplab.data import datasets
    from sweeplab.data.heads import reported_metrics, resolve_heads
    from sweeplab.models import check_compatible, get_family

    dataset = datasets.load(cfg.data, cfg.seed)
    family = get_family(cfg.family)
    check_compatible(family, dataset)
    heads = resolve_heads(dataset, cfg.model, cfg.trainer)
    check_objective(cfg, reported_metrics(heads))
    dataset = dataset.with_one_hot([h.name for h in heads if h.one_hot])
    if not quiet:
        print(progress.fit(f"[sweeplab] data {dataset.summary()}"), flush=True)
    return dataset, family


def tuner_location(cfg: AppConfig) -> tuple[str, str]:
    """(directory, project_name) of the search's Keras Tuner state."""
    project = f"{cfg.family}-{cfg.tuner.kind.value}-{search_key(cfg.resolved)}"
    return str(Path(cfg.state_dir) / _safe(cfg.tracking.experiment)), project


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
