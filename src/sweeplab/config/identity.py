"""A search's identity: the hash that finds its MLflow run and Keras Tuner
state again when the same command is run twice."""

from __future__ import annotations

import hashlib
import json

# Keys that do not change what a search computes, so they do not change its identity.
_NOT_IDENTITY = {
    ("tracking",),
    ("ensemble",),
    ("tuner", "overwrite"),
    ("tuner", "workers"),
    ("trainer", "tensorboard"),
    ("state_dir",),
    ("leaderboard_rows",),
    ("compare_by",),
}


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
