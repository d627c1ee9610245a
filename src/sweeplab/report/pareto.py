"""The Pareto front of trials over several metrics (`pareto: [val_accuracy:max, params:min]`; default
the tuner's objective and `params:min`): the trials no other trial beats on one metric without losing
on another.

A search run logs `pareto.csv` (every trial that logged the metrics: its values, whether it is
feasible and on the front) and `pareto.png` (the first two metrics; the front highlighted, trials
outside `tuner.constraints` crossed), and its front trials are tagged `sweeplab.pareto=true` (the
tag leaves a trial that is no longer on it). Only feasible trials can be on the front. After a
multirun, the front across all its searches goes to a report run (`sweeplab.role=report`) and its
trials are tagged `sweeplab.pareto_across=true`: a trial keeps its own search's tag.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sweeplab.tracking.metric_names import VAL, scored
from sweeplab.tracking.model_cost import PARAMS, is_feasible
from sweeplab.tracking.tags import FAMILY, PARETO, PARETO_ACROSS, ROLE, TRIAL_ID

CSV, PNG = "pareto.csv", "pareto.png"


@dataclass(frozen=True)
class Goal:
    metric: str
    maximize: bool

    def better_or_equal(self, a: float, b: float) -> bool:
        return a >= b if self.maximize else a <= b

    def __str__(self) -> str:
        return f"{self.metric}:{'max' if self.maximize else 'min'}"


@dataclass
class Point:
    run: object
    values: list[float]
    feasible: bool
    on_front: bool = False


def goals(spec: list[str] | None, objective: str, maximize: bool) -> list[Goal]:
    """The validated `pareto` entries as goals; null: the objective and params:min."""
    if not spec:
        return [Goal(objective, maximize), Goal(PARAMS, False)]
    return [Goal(metric, direction == "max") for metric, _, direction in (e.rpartition(":") for e in spec)]


def goals_of(cfg) -> list[Goal]:
    """A validated config's goals (the top-level key `pareto`)."""
    return goals(cfg.resolved.get("pareto"), cfg.tuner.objective, cfg.tuner.direction.value == "max")


def value_of(run, metric: str) -> float | None:
    """A trial's value of `metric`: a validation metric as its best weights scored it when the trial
    ended (`final_val_*`), else the metric as logged, else Keras Tuner's score of it."""
    metrics = run.data.metrics
    keys = ([f"final_{metric}"] if metric.startswith(VAL) else []) + [metric, scored(metric)]
    return next((metrics[k] for k in keys if k in metrics), None)


def points(runs: list, targets: list[Goal]) -> list[Point]:
    """The runs that logged every goal's metric, with the front marked among the feasible ones."""
    found = []
    for run in runs:
        values = [value_of(run, g.metric) for g in targets]
        if all(v is not None for v in values):
            found.append(Point(run, values, is_feasible(run)))
    candidates = [p for p in found if p.feasible]
    for point in candidates:
        point.on_front = not any(_dominates(other.values, point.values, targets) for other in candidates)
    return found


def _dominates(a: list[float], b: list[float], targets: list[Goal]) -> bool:
    """`a` is at least as good as `b` on every goal and better on one."""
    at_least = all(g.better_or_equal(x, y) for g, x, y in zip(targets, a, b))
    return at_least and any(x != y for x, y in zip(a, b))


def table(found: list[Point], targets: list[Goal]) -> str:
    """pareto.csv: one row per trial, front first, then by the first goal."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["run_id", "trial_id", "family", *[g.metric for g in targets], "feasible", "pareto"])
    first = targets[0]
    ordered = sorted(found, key=lambda p: (not p.on_front, -p.values[0] if first.maximize else p.values[0]))
    for p in ordered:
        tags = p.run.data.tags
        row = [p.run.info.run_id, tags.get(TRIAL_ID, ""), tags.get(FAMILY, ""), *p.values, p.feasible, p.on_front]
        writer.writerow(row)
    return out.getvalue()


def figure(found: list[Point], targets: list[Goal], title: str):
    """The first two goals: every trial a dot, infeasible ones crossed, the front joined and highlighted."""
    from sweeplab.tracking.plots import plt

    x_goal, y_goal = targets[0], targets[1]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    groups = {
        "trials": ([p for p in found if p.feasible and not p.on_front], dict(color="tab:gray", marker="o", alpha=0.6)),
        "infeasible": ([p for p in found if not p.feasible], dict(color="tab:red", marker="x")),
        "Pareto front": ([p for p in found if p.on_front], dict(color="tab:orange", marker="o", s=60, zorder=3)),
    }
    for label, (chosen, style) in groups.items():
        if chosen:
            ax.scatter([p.values[0] for p in chosen], [p.values[1] for p in chosen], label=label, **style)
    front = sorted((p.values[0], p.values[1]) for p in groups["Pareto front"][0])
    if len(front) > 1:
        ax.plot(*zip(*front), color="tab:orange", alpha=0.7)
    ax.set_xlabel(str(x_goal))
    ax.set_ylabel(str(y_goal))
    more = f" (front over {len(targets)} metrics)" if len(targets) > 2 else ""
    ax.set_title(f"{title}: Pareto front{more}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def front_files(runs: list, targets: list[Goal], title: str) -> tuple[list[Point], dict]:
    """(the runs' points, {pareto.csv: its text, pareto.png: its figure}); no files without points."""
    found = points(runs, targets)
    if not found:
        print(f"\n[sweeplab] no Pareto front: no finished trial logged all of {', '.join(map(str, targets))}")
        return found, {}
    front = sum(p.on_front for p in found)
    print(f"\nPareto front ({', '.join(map(str, targets))}): {front} of {len(found)} trials")
    return found, {CSV: table(found, targets), PNG: figure(found, targets, title)}


def log_front(client, run_id: str, runs: list, targets: list[Goal], title: str, tag: str = PARETO) -> list[Point]:
    """pareto.csv and pareto.png to `run_id`; `tag`=true on the front's trials, removed from the others."""
    from sweeplab.tracking.plots import close

    found, files = front_files(runs, targets, title)
    if not found:
        return found
    client.log_text(run_id, files[CSV], CSV)
    client.log_figure(run_id, files[PNG], PNG)
    close(files[PNG])
    for point in found:
        if point.on_front:
            client.set_tag(point.run.info.run_id, tag, "true")
        elif tag in point.run.data.tags:  # on the front of an earlier, shorter run of this search
            client.delete_tag(point.run.info.run_id, tag)
    return found


def report_search(cfg, client, experiment_id: str, parent_id: str, title: str) -> list[Point]:
    """The search's front, logged to its run (see the module doc)."""
    from sweeplab.tracking.queries import trial_runs

    return log_front(client, parent_id, trial_runs(client, experiment_id, parent_id), goals_of(cfg), title)


def report_across(cfg, client, experiment_id: str) -> list[Point]:
    """The front across every search of the experiment, logged to a new report run."""
    from sweeplab.tracking.queries import trial_runs

    runs = trial_runs(client, experiment_id)
    if not runs:
        return []
    report = client.create_run(experiment_id, run_name="pareto", tags={ROLE: "report"})
    try:
        found = log_front(client, report.info.run_id, runs, goals_of(cfg), "all searches", PARETO_ACROSS)
    except BaseException:
        client.set_terminated(report.info.run_id, "FAILED")
        raise
    client.set_terminated(report.info.run_id, "FINISHED")
    return found
