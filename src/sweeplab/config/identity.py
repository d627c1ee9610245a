"""A search's identity: the hash that finds its MLflow run and Keras Tuner
state again when the same command is run twice.

An allow-list: only what changes the trials' results is part of it, so a re-run
that differs in how it is logged, shown or run (verbosity, workers, where the
store is) resumes the same search. Every config key is classified below, and a
test fails on a key that is in neither list.
"""

from __future__ import annotations

import hashlib
import json

EVERY_KEY = "*"

# What changes the trials' results (a group: EVERY_KEY, or the keys that do).
IDENTITY = {
    "seed": EVERY_KEY,
    "data": EVERY_KEY,
    "model": EVERY_KEY,
    "tuner": {
        "kind",
        "constraints",
        "warm_start",
        "warm_start_top",
        "max_trials",
        "objective",
        "direction",
        "seed",
        "executions_per_trial",
        "max_consecutive_failed_trials",
        "max_retries_per_trial",
        "max_epochs",
        "factor",
        "hyperband_iterations",
        "num_initial_points",
        "alpha",
        "beta",
    },
    "pruner": EVERY_KEY,
    # tf_data: its pipeline shuffles differently from fit's own shuffling.
    "trainer": {"epochs", "batch_size", "optimizer", "learning_rate", "loss", "tf_data", "early_stopping"},
}

# What does not: where results are logged or kept, what is printed, how many processes
# train, and settings that compute the same updates (steps_per_execution, best_weights).
NOT_IDENTITY = {
    "tracking": EVERY_KEY,
    "ensemble": EVERY_KEY,
    "state_dir": EVERY_KEY,
    "leaderboard_rows": EVERY_KEY,
    "compare_by": EVERY_KEY,
    "pareto": EVERY_KEY,
    # pack: a trial trained in a pack ends as it would alone.
    "tuner": {"overwrite", "workers", "oracle", "pack", "launcher", "ray", "slurm"},
    "trainer": {"verbose", "steps_per_execution", "best_weights", "tensorboard"},
}


def search_key(resolved: dict) -> str:
    """A stable hash of what defines the search's results (not where it is logged)."""
    identity = {}
    for group, value in resolved.items():
        keys = IDENTITY.get(group)
        if keys is None:
            continue
        if keys == EVERY_KEY or not isinstance(value, dict):
            identity[group] = value
        else:
            identity[group] = {k: v for k, v in value.items() if k in keys}
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def unclassified(resolved: dict) -> list[str]:
    """Config keys in neither IDENTITY nor NOT_IDENTITY (a new key must be put in one)."""

    def covers(table: dict, group: str, key: str | None) -> bool:
        keys = table.get(group)
        return keys == EVERY_KEY or (key is not None and keys is not None and key in keys)

    missing = []
    for group, value in resolved.items():
        keys = value if isinstance(value, dict) and IDENTITY.get(group) != EVERY_KEY else {None: None}
        for key in keys:
            if not (covers(IDENTITY, group, key) or covers(NOT_IDENTITY, group, key)):
                missing.append(group if key is None else f"{group}.{key}")
    return missing
