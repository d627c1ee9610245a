"""Load through the Ray launcher: one search of --trials trials (packs on, tuner.pack=auto) trained by
1, 2 and 4 agents that `tuner.launcher=ray` starts as Ray actors (a Ray started on this machine,
each agent reserving cores/N CPUs), tracking to an MLflow server on PostgreSQL (a fresh database).

Every arm checks what a team relies on: each trial has exactly one FINISHED run, and no run is
left RUNNING. Throughput = finished trials / wall time from the search command's start to its
end (the Ray start-up, the agents' imports and their data loading count: a user waits for them).
On a machine with fewer cores than agents, more agents show the launcher's overhead, not a speed-up.
Skipped, with a message, without PostgreSQL at 127.0.0.1:5432 or without Ray (`pip install -e '.[ray]'`).

    python bench/ray_load.py                               # 32 trials x 5 epochs, 1 run per arm
    python bench/ray_load.py --trials 8 --epochs 2
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from scale import Unavailable, arm_result, summarise, team_server  # noqa: E402

ARMS = ["1-agent", "2-agents", "4-agents"]


def search_command(args, port: int, agents: int, tmp: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sweeplab",
        "tracking=server",
        f"tracking.uri=http://127.0.0.1:{port}",
        "tuner=random",
        "tuner.launcher=ray",
        f"tuner.workers={agents}",
        f"tuner.ray.num_cpus={(os.cpu_count() or 1) / agents}",
        f"tuner.max_trials={args.trials}",
        f"tuner.seed={args.tuner_seed}",
        f"trainer.epochs={args.epochs}",
        "trainer.verbose=0",
        "leaderboard_rows=1",
        "ensemble=none",
        f"state_dir={tmp / 'state'}",
    ]


def one_finished_run_per_trial(client, experiment_id: str, trials: int) -> None:
    runs = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'trial'", max_results=5000)
    finished = Counter(r.data.tags["sweeplab.trial_id"] for r in runs if r.info.status == "FINISHED")
    running = [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    twice = {trial: n for trial, n in finished.items() if n > 1}
    if len(finished) != trials or twice or running:
        raise SystemExit(
            f"{len(finished)} of {trials} trials FINISHED; trained twice: {twice}; left RUNNING: {running}"
        )


def arm(args, agents: int) -> dict:
    if importlib.util.find_spec("ray") is None:
        return dict(skipped="Ray is not installed (pip install -e '.[ray]')")
    from mlflow import MlflowClient

    tmp = Path(args.tmp)
    try:
        with team_server(tmp, {"RAY_ADDRESS": ""}) as (team, port):
            begin = time.perf_counter()
            chief, chief_log = team.start(search_command(args, port, agents, tmp), "search")
            if chief.wait() != 0:
                raise SystemExit(f"the search exited with {chief.returncode}:\n{chief_log.read_text()[-3000:]}")
            wall = time.perf_counter() - begin
            client = MlflowClient(f"http://127.0.0.1:{port}")
            experiment_id = client.get_experiment_by_name("sweeplab").experiment_id
            one_finished_run_per_trial(client, experiment_id, args.trials)
            (search,) = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'search'")
    except Unavailable as why:
        return dict(skipped=str(why))
    return arm_result(wall, search.data.metrics)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tuner-seed", type=int, default=1)
    common.worker_args(parser)
    common.report_arg(parser)
    args, _ignored = parser.parse_known_args()  # make bench ARGS go to every script
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        common.finish_worker(args, arm(args, int(args.worker.split("-")[0])))
        return
    title = "ray load"
    detail = (
        f"random search, mlp on digits, {args.trials} trials x up to {args.epochs} epochs, packs on, "
        f"1, 2 and 4 agents as Ray actors (tuner.launcher=ray), MLflow server on PostgreSQL, "
        f"{args.repeats} run(s) per arm, alternating; each arm checked: one FINISHED run per trial"
    )
    common.header(title, detail)
    results = common.alternate(__file__, ARMS, args.repeats, common.forward(args, ["trials", "epochs", "tuner_seed"]))
    summary, rows = summarise(results, ARMS)
    if not rows:
        return
    others = [name for name in summary if name != "1-agent"]
    line = ", ".join(f"{name}/1-agent = {summary[name] / summary['1-agent']:.2f}" for name in others) + (
        f" in trials/min, on {os.cpu_count()} cores (agents beyond the cores show overhead, not speed-up)"
    )
    headers = ["arm", "trials", "wall s", "trials/min", "best val acc"]
    common.publish(args, "ray_load", title, detail, headers, rows, line)


if __name__ == "__main__":
    main()
