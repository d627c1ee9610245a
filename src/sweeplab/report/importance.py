"""Which hyperparameters decide a search's objective: a random forest fitted from the finished
trials' hyperparameters to their objective, ranked by permutation importance, logged to a run as
`importance.csv`, `importance.png`, `parallel_coordinates.png` and metrics `importance_<hp>`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from sweeplab.errors import describe
from sweeplab.report.leaderboard import hyperparameter_names
from sweeplab.tracking.metric_names import ranking_metric
from sweeplab.tracking.tags import FAMILY

MIN_TRIALS = 5  # fewer trials than this say nothing a forest could learn
SEED = 0
TREES = 100
REPEATS = 10  # shuffles per hyperparameter
# MLflow metric keys hold letters, digits, `_ - . / :` and spaces only.
_NOT_IN_METRIC_KEY = re.compile(r"[^\w\-./: ]")
PREFIX = "[sweeplab]"


@dataclass
class Axis:
    """One hyperparameter across the trials: numbers to fit and plot (NaN where a trial lacks it),
    and for a choice its values in the order of their codes (None: numeric)."""

    numbers: list[float]
    choices: list[str] | None


@dataclass
class Importance:
    objective: str
    scores: list[float]  # each trial's objective
    axes: dict[str, Axis]  # hyperparameter -> its values, in the trials' order
    ranked: list[tuple[str, float, float]]  # (hyperparameter, mean, std), most important first

    def csv(self) -> str:
        rows = [f"{name},{mean:.6g},{std:.6g}" for name, mean, std in self.ranked]
        return "\n".join(["hyperparameter,importance,std", *rows]) + "\n"

    def metrics(self) -> dict[str, float]:
        return {metric_key(name): mean for name, mean, _ in self.ranked}

    def line(self, shown: int = 5) -> str:
        top = ", ".join(f"{name} {mean:.3f}" for name, mean, _ in self.ranked[:shown])
        more = f" (+{len(self.ranked) - shown} more)" if len(self.ranked) > shown else ""
        return f"Hyperparameter importance for {self.objective} ({len(self.scores)} trials): {top}{more}"


def metric_key(name: str) -> str:
    """The metric holding a hyperparameter's importance: `importance_<name>`, made a valid MLflow key."""
    return "importance_" + _NOT_IN_METRIC_KEY.sub("_", name)


def hyperparameter_columns(runs: list) -> dict[str, list[str]]:
    """hyperparameter -> each run's value ('' where it has none); across families, the family too.
    Only those that vary: a value every trial shares explains nothing."""
    columns = {name: [r.data.params.get(name, "") for r in runs] for name in hyperparameter_names(runs)}
    families = [r.data.tags.get(FAMILY, "") for r in runs]
    if len(set(families)) > 1 and "family" not in columns:
        columns["family"] = families
    return {name: values for name, values in columns.items() if len(set(values)) > 1}


def encode(values: list[str]) -> Axis:
    """Numbers as they are; choices (and booleans) by their index in sorted order; '' as NaN."""
    present = [v for v in values if v != ""]
    try:
        return Axis([float(v) if v != "" else math.nan for v in values], None)
    except ValueError:
        choices = sorted(set(present))
        return Axis([float(choices.index(v)) if v != "" else math.nan for v in values], choices)


def importance_of(runs: list, objective: str) -> Importance | str:
    """The importance of each varied hyperparameter of `runs` for `objective`, or why there is none."""
    key = ranking_metric(objective)
    # In one order whatever order they came in: the forest's bootstrap samples follow it.
    scored = sorted(
        (r for r in runs if key in r.data.metrics and math.isfinite(r.data.metrics[key])), key=lambda r: r.info.run_id
    )
    if len(scored) < MIN_TRIALS:
        return f"{len(scored)} finished trial(s) logged {key}; it takes at least {MIN_TRIALS}"
    columns = hyperparameter_columns(scored)
    if not columns:
        return f"no hyperparameter varies across the {len(scored)} finished trials"
    axes = {name: encode(values) for name, values in columns.items()}
    scores = [r.data.metrics[key] for r in scored]
    return Importance(objective, scores, axes, forest_importance(axes, scores))


def forest_importance(axes: dict[str, Axis], scores: list[float]) -> list[tuple[str, float, float]]:
    """A seeded random forest from the hyperparameters to the scores; each hyperparameter's mean
    drop in the forest's R^2 when its values are shuffled (and its spread), most important first."""
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    x = np.column_stack([axis.numbers for axis in axes.values()])
    y = np.asarray(scores, dtype=float)
    forest = RandomForestRegressor(n_estimators=TREES, random_state=SEED, n_jobs=1).fit(x, y)
    shuffled = permutation_importance(forest, x, y, n_repeats=REPEATS, random_state=SEED, n_jobs=1)
    found = zip(axes, shuffled.importances_mean.tolist(), shuffled.importances_std.tolist())
    return sorted(found, key=lambda row: (-row[1], row[0]))


def _as_is(text: str) -> str:
    return text


def files(found: Importance, maximize: bool, title: str) -> dict:
    """{artifact file name: its text or figure}."""
    from sweeplab.report import plots

    return {
        "importance.csv": found.csv(),
        "importance.png": plots.importance(found.ranked, found.objective, title),
        "parallel_coordinates.png": plots.parallel_coordinates(
            # Most important first: the axes that decide the objective lie next to each other.
            {name: (found.axes[name].numbers, found.axes[name].choices) for name, _, _ in found.ranked},
            found.scores,
            found.objective,
            maximize,
            title,
        ),
    }


def importance_files(runs: list, objective: str, maximize: bool, title: str, fit=_as_is) -> tuple[dict, dict]:
    """({artifact file name: text or figure}, {metric: value}) of the importance of `runs`'
    hyperparameters, with a line that sums it up printed; with too few trials, or when it cannot be
    computed, nothing ({}, {}) and one line saying why: this never fails a search or a report.
    `fit` breaks a printed line to the width (a search's `progress.fit`)."""
    try:
        found = importance_of(runs, objective)
        if isinstance(found, str):
            print("\n" + fit(f"{PREFIX} no hyperparameter importance: {found}"), flush=True)
            return {}, {}
        made = files(found, maximize, title)
    except Exception as err:
        _said_failed(err, fit)
        return {}, {}
    print("\n" + fit(found.line()), flush=True)
    return made, found.metrics()


def log_importance(
    client, run_id: str, runs: list, objective: str, maximize: bool, title: str, fit=_as_is
) -> list[str]:
    """`importance_files` logged to `run_id` (a search's or a report's run); the names logged.
    A store that refuses them is said in one line, and does not fail the caller."""
    from sweeplab.tracking.batches import log_metrics
    from sweeplab.tracking.plots import close

    made, metrics = importance_files(runs, objective, maximize, title, fit)
    try:
        for name, content in made.items():
            if isinstance(content, str):
                client.log_text(run_id, content, name)
            else:
                client.log_figure(run_id, content, name)
        if metrics:
            log_metrics(client, run_id, metrics)
    except Exception as err:
        _said_failed(err, fit)
        return []
    finally:
        for content in made.values():
            if not isinstance(content, str):
                close(content)
    return list(made)


def _said_failed(err: Exception, fit) -> None:
    print("\n" + fit(f"{PREFIX} no hyperparameter importance: {describe(err)}"), flush=True)
