"""Leaderboards read back from MLflow."""

from __future__ import annotations

from sweeplab.tracking import FAMILY, PARENT, ROLE


def trial_runs(client, experiment_id: str, parent_run_id: str | None = None, status: str = "FINISHED") -> list:
    query = f"tags.`{ROLE}` = 'trial' and attributes.status = '{status}'"
    if parent_run_id:
        query += f" and tags.`{PARENT}` = '{parent_run_id}'"
    return client.search_runs([experiment_id], filter_string=query, max_results=5000)


def rank(runs: list, objective: str, maximize: bool) -> list:
    """Runs ordered best first by their final value of the objective."""
    key = f"final_{objective}" if objective.startswith("val_") else f"final_val_{objective}"
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
