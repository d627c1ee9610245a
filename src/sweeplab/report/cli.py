"""`python -m sweeplab.report --experiment NAME`: the leaderboard across
families and trials, the experiment's ensembles, and the report plots logged
as artifacts of a report run (`sweeplab.role=report`); `--no-log` writes them
to a folder instead. Imports neither MLflow nor TensorFlow for `--help`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sweeplab.tracking.store import add_store_arguments


def parser() -> argparse.ArgumentParser:
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
        from sweeplab.report.leaderboard import ensembles, figures, leaderboard
        from sweeplab.tracking.plots import close
        from sweeplab.tracking.queries import objective_of, rank, trial_runs
        from sweeplab.tracking.store import open_experiment
        from sweeplab.tracking.tags import FAMILY, ROLE

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
            close(figure)
    except SweeplabError as err:
        print(f"sweeplab.report: {err}", file=sys.stderr)
        return 2
    print("\nPlots:\n" + "\n".join(f"  {p}" for p in paths))
    return 0
