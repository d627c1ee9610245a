"""Candidates grouped by data set and task, and trials that are the same trained model counted once.

A group is what one ensemble may average: trials of one data set, split and task. It is read
from what each trial run logged, before any download: its MLflow dataset lineage (each split's
name, source, feature shapes and target names; not the digest, which also hashes the targets'
encoding, one-hot or integer) and its search run's `data.*` params and `seed` (which split the
rows). Predictions are compared once downloaded (`encoding.signature`).

Two trials are the same trained model when family, hyperparameters, data, seed and every
training setting agree (searches by different tuners with the same seed start with the same
trials): the better-ranked one is kept, the other counted once with it. A trial whose search run
is unknown (no `seed`) is never taken for a duplicate.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from sweeplab.tracking.tags import FAMILY, PARENT

# Search-run params that change which trials a search proposes, where or how it runs, or
# what it prints, but not the model a trial with given hyperparameters trains into
# (see sweeplab.config.identity). Anything else counts, so a new key never merges two models.
_NOT_MODEL = (
    "tracking",
    "ensemble",
    "state_dir",
    "leaderboard_rows",
    "compare_by",
    "pareto",
    "tuner.kind",
    "tuner.max_trials",
    "tuner.seed",
    "tuner.overwrite",
    "tuner.workers",
    "tuner.oracle",
    "tuner.pack",
    "tuner.max_consecutive_failed_trials",
    "tuner.constraints",
    "tuner.num_initial_points",
    "tuner.alpha",
    "tuner.beta",
    "tuner.max_epochs",
    "tuner.factor",
    "tuner.hyperband_iterations",
    "trainer.verbose",
    "trainer.steps_per_execution",
    "trainer.best_weights",
    "trainer.tensorboard",
)
# Data settings that leave the rows, inputs and labels as they are (standardization is inside the model).
_NOT_DATA = ("data.standardize",)


@dataclass
class Group:
    """Distinct candidates of one data set and task, best first."""

    key: tuple
    label: str  # says the group: the data set's name (with a digest when two groups share it)
    runs: list = field(default_factory=list)
    duplicates: dict[str, str] = field(default_factory=dict)  # run id counted once -> the run id kept
    searches: set[str] = field(default_factory=set)  # search runs of its trials, duplicates included


def group_candidates(client, ranked: list) -> list[Group]:
    """`ranked` trial runs (best first) in groups, the best group first; duplicates counted once."""
    search_params = _search_params(client, ranked)
    groups: dict[tuple, Group] = {}
    kept: dict[tuple, str] = {}
    for run in ranked:
        params = search_params.get(run.data.tags.get(PARENT), {})
        key = data_key(run, params)
        group = groups.setdefault(key, Group(key, _data_name(run, params)))
        group.searches.add(run.data.tags.get(PARENT))
        identity = model_identity(run, params, key)
        if identity is not None and identity in kept:
            group.duplicates[run.info.run_id] = kept[identity]
            continue
        if identity is not None:
            kept[identity] = run.info.run_id
        group.runs.append(run)
    _unique_labels(list(groups.values()))
    return list(groups.values())


def _search_params(client, runs: list) -> dict[str, dict[str, str]]:
    """{search run id: its params} for the search runs of `runs`, each read once."""
    parents = {r.data.tags.get(PARENT) for r in runs} - {None}
    return {parent: client.get_run(parent).data.params for parent in sorted(parents)}


def data_key(run, search_params: dict[str, str]) -> tuple:
    """What identifies the trial's data set and task, whatever the targets' encoding."""
    lineage = []
    for entry in run.inputs.dataset_inputs if run.inputs else []:
        dataset = entry.dataset
        profile = json.loads(dataset.profile) if dataset.profile else {}
        context = ",".join(sorted(t.value for t in entry.tags))
        lineage.append(
            (
                context,
                dataset.name,
                dataset.source_type,
                dataset.source,
                json.dumps(profile.get("features_shape"), sort_keys=True),
                tuple(sorted(profile.get("targets_shape") or {})),
            )
        )
    settings = sorted(
        (k, v) for k, v in search_params.items() if k == "seed" or (k.startswith("data.") and k not in _NOT_DATA)
    )
    return tuple(sorted(lineage)), tuple(settings)


def model_identity(run, search_params: dict[str, str], data: tuple) -> tuple | None:
    """What makes the trial's trained model; None when its seed is unknown."""
    if "seed" not in search_params:
        return None
    training = sorted((k, v) for k, v in search_params.items() if not _names_any(k, _NOT_MODEL))
    return (
        run.data.tags.get(FAMILY),
        tuple(sorted(run.data.params.items())),
        data,
        tuple(training),
    )


def _names_any(key: str, names: tuple) -> bool:
    return any(key == name or key.startswith(f"{name}.") for name in names)


def _data_name(run, search_params: dict[str, str]) -> str:
    """The data set's name: its validation split's lineage name without `-val`, else `data.name`."""
    for entry in run.inputs.dataset_inputs if run.inputs else []:
        name = entry.dataset.name
        if name.endswith("-val"):
            return name[: -len("-val")]
    return search_params.get("data.name", "trials")


def _unique_labels(groups: list[Group]) -> None:
    """A digest of the group's key after a name two groups share (seeds, splits, tasks of one data set)."""
    names = [g.label for g in groups]
    for group in groups:
        if names.count(group.label) > 1:
            group.label += "-" + hashlib.sha256(repr(group.key).encode()).hexdigest()[:6]
