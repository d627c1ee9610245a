"""Leaderboards read back from MLflow: the trials of a search or of a whole
experiment, a comparison of every trial by one param, and the ensembles."""

from __future__ import annotations

from sweeplab.tracking.batches import log_metrics
from sweeplab.tracking.metric_names import final_metric_names, metric_of, ranking_metric, shown
from sweeplab.tracking.model_cost import is_feasible
from sweeplab.tracking.tags import FAMILY, PARENT, PRUNED, ROLE


def leaderboard(runs: list, objective: str, rows: int = 10, width: int | None = None) -> str:
    """A text table: rank, run name, family, hyperparameters, the objective's metric when it is not
    a final one (an objective on the training split: what Keras Tuner scored), val and test metrics.
    With `width`, hyperparameter columns are left out from the right until every line fits. Trials
    tagged infeasible (outside tuner.constraints) are left out, and counted in the title."""
    infeasible = sum(not is_feasible(r) for r in runs)
    runs = [r for r in runs if is_feasible(r)]
    if not runs:
        return "No finished trials." + (f" ({infeasible} infeasible: tuner.constraints)" if infeasible else "")
    metric_columns = final_metric_names(m for r in runs for m in r.data.metrics)
    if ranking_metric(objective) not in metric_columns:
        metric_columns.insert(0, ranking_metric(objective))
    param_names = hyperparameter_names(runs[:rows])
    left_out = f"; {infeasible} infeasible left out (tuner.constraints)" if infeasible else ""
    title = f"Leaderboard (by {objective}; {min(rows, len(runs))} of {len(runs)} finished trials{left_out})"
    for kept in range(len(param_names), -1, -1):
        lines = _table(runs[:rows], param_names[:kept], metric_columns)
        if width is None or kept == 0 or max(map(len, lines)) <= width:
            break
    if kept < len(param_names):
        lines.append(f"(+{len(param_names) - kept} hyperparameters left out to fit: each trial's run has them all)")
    return "\n".join([title, *lines])


def hyperparameter_names(runs: list) -> list[str]:
    """The hyperparameters among the runs' params, sorted: Keras Tuner's own bookkeeping
    (tuner/epochs, tuner/bracket...) is not one."""
    return sorted({p for r in runs for p in r.data.params if not p.startswith("tuner/")})


def _table(runs: list, param_names: list[str], metric_columns: list[str]) -> list[str]:
    header = ["#", "run", "family", *param_names, *map(shown, metric_columns)]
    table = []
    for i, run in enumerate(runs, start=1):
        table.append(
            [
                str(i),
                _name(run),
                run.data.tags.get(FAMILY, ""),
                *[_short(run.data.params.get(p, "")) for p in param_names],
                *[f"{run.data.metrics[m]:.4f}" if m in run.data.metrics else "" for m in metric_columns],
            ]
        )
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *table]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _name(run) -> str:
    """The run's name; a trial the oracle pruned says after how many epochs."""
    pruned = run.data.tags.get(PRUNED)
    return f"{run.info.run_name} (pruned at {pruned})" if pruned else run.info.run_name


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() or len(value) <= 8 else f"{number:.4g}"


COMPARED = ("epochs_trained", "param_count")


def comparison_rows(runs: list, by: str) -> tuple[list[str], list[list]]:
    """One row per trial, ordered by the trial param `by`: final val/test metrics, epochs, parameters."""
    metrics = final_metric_names(m for r in runs for m in r.data.metrics)
    columns = [by, *metrics, *COMPARED]
    rows = [
        [r.data.params.get(by, ""), *[r.data.metrics.get(m) for m in [*metrics, *COMPARED]]]
        for r in runs
        if by in r.data.params
    ]
    return columns, sorted(rows, key=lambda row: _sort_key(row[0]))


def comparison_table(columns: list[str], rows: list[list]) -> str:
    header = [shown(c) for c in columns]
    cells = [[str(row[0]), *[_cell(v) for v in row[1:]]] for row in rows]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *cells]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def log_comparison(client, run_id: str, runs: list, by: str, title: str) -> str:
    """Print the comparison of every trial by `by` and log it (text, CSV, figure, metrics by step) to `run_id`."""
    from sweeplab.report import plots
    from sweeplab.tracking.plots import close

    columns, rows = comparison_rows(runs, by)
    if not rows:
        print(f"\nNo finished trial has the param {by!r} to compare by.")
        return ""
    text = comparison_table(columns, rows)
    print(f"\nComparison by {by} ({len(rows)} trials)\n{text}")
    client.log_text(run_id, text, "comparison.txt")
    csv = "\n".join(",".join("" if v is None else str(v) for v in row) for row in [columns, *rows])
    client.log_text(run_id, csv, "comparison.csv")
    figure = plots.comparison(columns, rows, f"{title}: by {by}")
    client.log_figure(run_id, figure, "comparison.png")
    close(figure)
    for row in rows:
        step = int(float(row[0])) if _is_number(row[0]) else 0
        values = {f"compare_{shown(c)}": v for c, v in zip(columns[1:], row[1:]) if v is not None}
        log_metrics(client, run_id, values, step=step)
    return text


def _sort_key(value: str):
    return (0, float(value), "") if _is_number(value) else (1, 0.0, value)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _cell(value) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.4f}"


def figures(runs: list, objective: str, maximize: bool) -> dict:
    """{artifact file name: figure}: best-so-far per search, objective by family, hyperparameters."""
    from sweeplab.report import plots

    key = ranking_metric(objective)
    by_search: dict[str, list] = {}
    by_family: dict[str, list[float]] = {}
    points: dict[str, list[tuple]] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        score = run.data.metrics[key]
        search_label = f"{run.data.tags.get(FAMILY, '?')} search {run.data.tags.get(PARENT, '?')[:6]}"
        by_search.setdefault(search_label, []).append(score)
        by_family.setdefault(run.data.tags.get(FAMILY, "?"), []).append(score)
        for name, value in run.data.params.items():
            points.setdefault(name, []).append((value, score))
    return {
        "best_so_far_by_search.png": plots.best_so_far_by_search(by_search, objective, maximize),
        "objective_by_family.png": plots.objective_by_family(by_family, objective),
        "hyperparameters_vs_objective.png": plots.hyperparameters_vs_objective(points, objective),
    }


def ensembles(client, experiment_id: str, objective: str) -> str:
    """A line per ensemble run: members and ensemble vs best member on test."""
    name = metric_of(objective)
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{ROLE}` = 'ensemble' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    if not runs:
        return "No ensembles yet (python -m sweeplab.ensemble --experiment ...)."
    lines = [f"Ensembles (newest first; test {name})"]
    for run in runs:
        m = run.data.metrics
        members = len(run.data.params.get("members", "").split(","))
        lines.append(
            f"  {run.info.run_id}  {members} member(s)  ensemble {m.get(f'ensemble_test_{name}', float('nan')):.4f}"
            f"  best member {m.get(f'best_member_test_{name}', float('nan')):.4f}"
        )
    return "\n".join(lines)
