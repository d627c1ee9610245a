"""Reading runs back: an experiment's trial runs, ranked by the objective,
and the objective a finished sweep was searched by."""

from __future__ import annotations

from sweeplab.tracking.metric_names import ranking_metric, validation_metric
from sweeplab.tracking.tags import PARENT, ROLE

DEFAULT_OBJECTIVE, DEFAULT_DIRECTION = "val_accuracy", "max"


def trial_runs(
    client,
    experiment_id: str,
    parent_run_id: str | None = None,
    status: str | None = "FINISHED",
    page_size: int = 1000,
    where: str = "",
) -> list:
    """An experiment's trial runs with `status` (None: any), optionally of one search only and
    matching the filter `where`: every one, page by page."""
    query = f"tags.`{ROLE}` = 'trial'"
    for condition in (
        status and f"attributes.status = '{status}'",
        parent_run_id and f"tags.`{PARENT}` = '{parent_run_id}'",
        where,
    ):
        if condition:
            query += f" and {condition}"
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=query, max_results=page_size, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def rank(runs: list, objective: str, maximize: bool, on_validation: bool = False) -> list:
    """Runs ordered best first by the metric that holds the objective (`metric_names.ranking_metric`);
    by its validation measure (`final_val_*`) with `on_validation`, or where no run was scored by that
    objective (a report or ensemble by another objective than the search's)."""
    key = ranking_metric(objective)
    if on_validation or not any(key in r.data.metrics for r in runs):
        key = validation_metric(objective)
    scored = [r for r in runs if key in r.data.metrics]
    return sorted(scored, key=lambda r: r.data.metrics[key], reverse=maximize)


def objective_of(args, client, experiment_id: str) -> tuple[str, bool]:
    """(objective, maximize): the command's --objective/--direction, else those of
    the experiment's latest search, else the defaults."""
    runs = client.search_runs(
        [experiment_id], f"tags.`{ROLE}` = 'search'", order_by=["attributes.start_time DESC"], max_results=1
    )
    params = runs[0].data.params if runs else {}
    objective = args.objective or params.get("tuner.objective", DEFAULT_OBJECTIVE)
    direction = args.direction or params.get("tuner.direction", DEFAULT_DIRECTION)
    return objective, direction == "max"
