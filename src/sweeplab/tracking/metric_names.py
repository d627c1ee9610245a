"""The names of a trial's metrics, in one place.

Keras logs an epoch's metric `m` on the training split as `m` and on the validation
split as `val_m`. When a trial ends, its best epoch's weights are evaluated again on
the validation and test splits (`final_val_m`, `test_m`), and the score Keras Tuner
ranked it by is logged as `scored_<objective>`.

The tuner's objective names a metric on one split: `val_accuracy` the validation
split's, `accuracy` or `loss` the training split's. Trials are ranked, and a search's
best score reported, by the logged metric that holds the objective (`ranking_metric`).
"""

from __future__ import annotations

# Keras' prefix of a metric measured on the validation split.
VAL = "val_"
# split -> the prefix of the metrics its evaluation logs when a trial ends.
FINAL_PREFIXES = {"val": "final_val_", "test": "test_"}
_FINAL = "final_"


def final_metrics(split: str, scores: dict) -> dict:
    """A trial's evaluation on `split` ({metric: value}) under the names it is logged by."""
    return {FINAL_PREFIXES[split] + name: value for name, value in scores.items()}


def split_of(key: str) -> str | None:
    """The split a logged final metric was measured on (None: not a final metric)."""
    return next((split for split, prefix in FINAL_PREFIXES.items() if key.startswith(prefix)), None)


def final_metric_names(keys) -> list[str]:
    """The final metrics among `keys`: validation first, then test, each sorted."""
    splits = list(FINAL_PREFIXES)
    return sorted({k for k in keys if split_of(k)}, key=lambda k: (splits.index(split_of(k)), k))


def shown(key: str) -> str:
    """A logged metric's column name in tables: `final_val_accuracy` -> `val_accuracy`."""
    return key.removeprefix(_FINAL)


def scored(objective: str) -> str:
    """Keras Tuner's score of a trial by `objective` (its best epoch; the mean over executions)."""
    return f"scored_{objective}"


def ranking_metric(objective: str) -> str:
    """The logged trial metric that holds `objective`: on the validation split, the best weights
    evaluated again (`final_val_accuracy`); on the training split, which is not evaluated again,
    what Keras Tuner scored (`scored_accuracy`)."""
    return _FINAL + objective if objective.startswith(VAL) else scored(objective)


def validation_metric(objective: str) -> str:
    """The trial metric that holds `objective`'s measure on the validation split, whatever split the
    objective names: `val_loss` and `loss` -> `final_val_loss`."""
    return _FINAL + VAL + metric_of(objective)


def best(objective: str) -> str:
    """The search run's metric holding the best trial's value of `objective`."""
    return f"best_{objective}"


def metric_of(objective: str) -> str:
    """The metric an objective measures, whatever the split: `val_accuracy` -> `accuracy`."""
    return objective.removeprefix(VAL)
