"""Leaderboards and report plots read back from MLflow.

`python -m sweeplab.report --experiment NAME` prints the leaderboard across
families and trials, the experiment's ensembles, and logs the plots as
artifacts of a report run (`sweeplab.role=report`); `--no-log` writes them
to a folder instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sweeplab.tracking import FAMILY, PARENT, ROLE, trial_runs


def metric_key(objective: str) -> str:
    """The trial metric that ranks by `objective`: its final value on the validation split."""
    return f"final_{objective}" if objective.startswith("val_") else f"final_val_{objective}"


def rank(runs: list, objective: str, maximize: bool) -> list:
    """Runs ordered best first by their final value of the objective."""
    key = metric_key(objective)
    scored = [r for r in runs if key in r.data.metrics]
    return sorted(scored, key=lambda r: r.data.metrics[key], reverse=maximize)


def leaderboard(runs: list, objective: str, rows: int = 10) -> str:
    """A text table: rank, run name, family, hyperparameters, val and test metrics."""
    if not runs:
        return "No finished trials."
    metric_names = sorted(
        {m for r in runs for m in r.data.metrics if m.startswith(("final_val_", "test_"))},
        key=lambda m: (not m.startswith("final_val_"), m),
    )
    # Keras Tuner's own bookkeeping (tuner/epochs, tuner/bracket...) is not a hyperparameter.
    param_names = sorted({p for r in runs[:rows] for p in r.data.params if not p.startswith("tuner/")})
    header = ["#", "run", "family", *param_names, *[m.replace("final_", "") for m in metric_names]]
    table = []
    for i, run in enumerate(runs[:rows], start=1):
        table.append(
            [
                str(i),
                run.info.run_name,
                run.data.tags.get(FAMILY, ""),
                *[_short(run.data.params.get(p, "")) for p in param_names],
                *[f"{run.data.metrics[m]:.4f}" if m in run.data.metrics else "" for m in metric_names],
            ]
        )
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *table]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    title = f"Leaderboard (by {objective}; {min(rows, len(runs))} of {len(runs)} finished trials)"
    return "\n".join([title, *lines])


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() or len(value) <= 8 else f"{number:.4g}"


COMPARED = ("epochs_trained", "param_count")


def comparison_rows(runs: list, by: str) -> tuple[list[str], list[list]]:
    """One row per trial, ordered by the trial param `by`: final val/test metrics, epochs, parameters."""
    metrics = sorted(
        {m for r in runs for m in r.data.metrics if m.startswith(("final_val_", "test_"))},
        key=lambda m: (not m.startswith("final_val_"), m),
    )
    columns = [by, *metrics, *COMPARED]
    rows = [
        [r.data.params.get(by, ""), *[r.data.metrics.get(m) for m in [*metrics, *COMPARED]]]
        for r in runs
        if by in r.data.params
    ]
    return columns, sorted(rows, key=lambda row: _sort_key(row[0]))


def comparison_table(columns: list[str], rows: list[list]) -> str:
    header = [c.replace("final_", "") for c in columns]
    cells = [[str(row[0]), *[_cell(v) for v in row[1:]]] for row in rows]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *cells]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def log_comparison(client, run_id: str, runs: list, by: str, title: str) -> str:
    """Print the comparison of every trial by `by` and log it (text, CSV, figure, metrics by step) to `run_id`."""
    from sweeplab import plots, tracking

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
    plots.close(figure)
    for row in rows:
        step = int(float(row[0])) if _is_number(row[0]) else 0
        values = {f"compare_{c.replace('final_', '')}": v for c, v in zip(columns[1:], row[1:]) if v is not None}
        tracking.log_metrics(client, run_id, values, step=step)
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
    from sweeplab import plots

    key = metric_key(objective)
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
    name = objective.removeprefix("val_")
    runs = client.search_runs(
        [experiment_id], f"tags.`{ROLE}` = 'ensemble' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=20,
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


def parser() -> argparse.ArgumentParser:
    from sweeplab.ensemble import add_store_arguments

    p = argparse.ArgumentParser(
        prog="python -m sweeplab.report",
        description="Leaderboard across families and trials of an experiment, its ensembles, and report plots.",
    )
    add_store_arguments(p)
    p.add_argument("--rows", type=int, default=20, help="leaderboard rows (default 20)")
    p.add_argument("--family", action="append", default=[], help="only trials of this family (repeatable)")
    p.add_argument("--no-log", action="store_true", help="write the plots to --output-dir instead of a report run")
    p.add_argument("--output-dir", default="sweeplab-report", help="where --no-log writes plots")
    return p


def main(argv: list[str] | None = None) -> int:
    from sweeplab.errors import SweeplabError

    args = parser().parse_args(argv)
    try:
        from sweeplab import plots
        from sweeplab.ensemble import objective_of
        from sweeplab.tracking import open_experiment

        client, _, experiment_id = open_experiment(args.tracking_uri, args.experiment)
        objective, maximize = objective_of(args, client, experiment_id)
        runs = [r for r in trial_runs(client, experiment_id) if not args.family or r.data.tags.get(FAMILY) in args.family]
        ranked = rank(runs, objective, maximize)
        print(leaderboard(ranked, objective, args.rows))
        print()
        print(ensembles(client, experiment_id, objective))
        if not ranked:
            return 0
        made = figures(ranked, objective, maximize)
        if args.no_log:
            folder = Path(args.output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            paths = []
            for name, figure in made.items():
                figure.savefig(folder / name)
                paths.append(str(folder / name))
        else:
            run = client.create_run(experiment_id, run_name="report", tags={ROLE: "report"})
            for name, figure in made.items():
                client.log_figure(run.info.run_id, figure, name)
            client.set_terminated(run.info.run_id, "FINISHED")
            paths = [f"{run.info.artifact_uri}/{name}" for name in made]
        for figure in made.values():
            plots.close(figure)
    except SweeplabError as err:
        print(f"sweeplab.report: {err}", file=sys.stderr)
        return 2
    print("\nPlots:\n" + "\n".join(f"  {p}" for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
