"""`sweeplab report --experiment NAME` (or `python -m sweeplab.report`): the leaderboard across
families and trials, the experiment's ensembles, and the report plots and hyperparameter
importance logged as artifacts of a report run (`sweeplab.role=report`); `--no-log` writes them
to a folder instead. Imports neither MLflow nor TensorFlow for `--help`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sweeplab.errors import command_boundary
from sweeplab.tracking.store import add_store_arguments


def parser(prog: str = "python -m sweeplab.report") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Leaderboard across families and trials of an experiment, its ensembles, and report plots.",
    )
    add_store_arguments(p)
    p.add_argument("--rows", type=int, default=20, help="leaderboard rows (default 20)")
    p.add_argument("--family", action="append", default=[], help="only trials of this family (repeatable)")
    p.add_argument("--no-log", action="store_true", help="write the plots to --output-dir instead of a report run")
    p.add_argument("--output-dir", default="sweeplab-report", help="where --no-log writes plots")
    return p


@command_boundary()
def main(argv: list[str] | None = None, prog: str = "python -m sweeplab.report") -> int:
    args = parser(prog).parse_args(argv)
    # MLflow and matplotlib only past --help.
    from sweeplab.report import pareto
    from sweeplab.report.importance import importance_files
    from sweeplab.report.leaderboard import ensembles, figures, leaderboard
    from sweeplab.tracking.plots import close
    from sweeplab.tracking.queries import objective_of, rank, trial_runs
    from sweeplab.tracking.store import open_experiment
    from sweeplab.tracking.tags import FAMILY

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
    found, metrics = importance_files(ranked, objective, maximize, f"experiment {args.experiment}")
    made.update(found)
    # The front across the experiment's searches (the objective and params), as files of the report.
    made.update(pareto.front_files(ranked, pareto.goals(None, objective, maximize), f"experiment {args.experiment}")[1])
    try:
        if args.no_log:
            paths = save_figures(made, args.output_dir)
        else:
            paths = log_figures(made, client, experiment_id, metrics)
    finally:
        for figure in made.values():
            if not isinstance(figure, str):
                close(figure)
    print("\nPlots:\n" + "\n".join(f"  {p}" for p in paths))
    return 0


def save_figures(made: dict, output_dir: str) -> list[str]:
    """The figures (and texts: importance.csv) as files of `output_dir`; their paths."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in made.items():
        if isinstance(content, str):
            (folder / name).write_text(content)
        else:
            content.savefig(folder / name)
    return [str(folder / name) for name in made]


def log_figures(made: dict, client, experiment_id: str, metrics: dict) -> list[str]:
    """The figures (and texts) as artifacts of a new report run (`sweeplab.role=report`), with
    `metrics` (importance_<hp>); their addresses."""
    from sweeplab.tracking.batches import log_metrics
    from sweeplab.tracking.tags import ROLE

    run = client.create_run(experiment_id, run_name="report", tags={ROLE: "report"})
    for name, content in made.items():
        if isinstance(content, str):
            client.log_text(run.info.run_id, content, name)
        else:
            client.log_figure(run.info.run_id, content, name)
    if metrics:
        log_metrics(client, run.info.run_id, metrics)
    client.set_terminated(run.info.run_id, "FINISHED")
    return [f"{run.info.artifact_uri}/{name}" for name in made]
