"""Scale: trials per minute of one search with 1 and with 2 trial workers, and
with 4 agents against a team server on PostgreSQL.

Arm `1-worker`: a random search of --trials trials in one process (tuner.workers=1).
Arm `2-workers`: the same search with tuner.workers=2: this process serves
Keras Tuner's oracle and two worker processes train the trials, each with half
the cores for TensorFlow, all tracking into the same MLflow store.
Arm `4-agents`: the same search started with tuner.workers=0 against an MLflow
server on PostgreSQL (`python -m sweeplab.tracking.server`, a fresh database),
trained by four `python -m sweeplab.agent` processes; timed from the search's
start (after its imports) to its end. Skipped, with a message, without
PostgreSQL at 127.0.0.1:5432.

Throughput = finished trials / wall time of the search, from inside the arm's
process after its imports; the workers' own start-up (imports, data) counts,
since a user waits for it too.

    python bench/scale.py                               # 20 trials, 2 repeats
    python bench/scale.py --trials 4 --epochs 5 --repeats 1
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ARMS = ["1-worker", "2-workers", "4-agents"]
AGENTS = 4


def search(args, workers: int) -> dict:
    from sweeplab import app

    store = common.temp_store(Path(args.tmp), experiment="bench-scale")
    ov = [
        "tuner=random",
        f"tuner.max_trials={args.trials}",
        f"tuner.seed={args.tuner_seed}",
        f"tuner.workers={workers}",
        f"trainer.epochs={args.epochs}",
        "trainer.verbose=0",
        "leaderboard_rows=1",
        "ensemble=none",
        *store,
    ]
    cfg = common.compose(ov)
    start = time.perf_counter()
    with common.quiet():
        result = app.run(cfg, overrides=ov)
    wall = time.perf_counter() - start
    return dict(wall=wall, trials=result.finished, per_minute=60 * result.finished / wall, best_val=result.best_score)


class Processes:
    """Processes of the team arm, each in its own session and with its log under `tmp`; stop() ends them all."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp, self.env = tmp, env
        self.started: list[subprocess.Popen] = []

    def start(self, command, name: str, shell: bool = False) -> tuple[subprocess.Popen, Path]:
        log_path = self.tmp / f"{name}.log"
        # The child keeps its own copy of the file descriptor; this process closes its copy.
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                command,
                cwd=self.tmp,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                shell=shell,
                start_new_session=True,
            )
        self.started.append(proc)
        return proc, log_path

    def stop(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()


def wait_for(path: Path, pattern: str, proc) -> re.Match:
    """The first match of `pattern` in a process's log, once it is written there."""
    while not (found := re.search(pattern, path.read_text())):
        if proc.poll() is not None:
            raise SystemExit(f"{path.name}: exited with {proc.returncode}:\n{path.read_text()[-2000:]}")
        time.sleep(0.2)
    return found


class Unavailable(Exception):
    """What an arm needs is not on this machine (the message says what)."""


@contextlib.contextmanager
def team_server(tmp: Path, extra_env: dict[str, str] | None = None):
    """A tracking server (`python -m sweeplab.tracking.server`) on a fresh PostgreSQL database, its
    processes and the team's under `tmp`: yields (Processes, port); all stopped, the database dropped,
    afterwards. Unavailable without PostgreSQL at 127.0.0.1:5432."""
    try:
        import psycopg

        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=5)
    except Exception as err:  # no driver, no server
        raise Unavailable(f"no PostgreSQL at 127.0.0.1:5432 ({type(err).__name__})") from None
    database = f"sweeplab_bench_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "ARTIFACTS": str(tmp / "artifacts"),
        "MLFLOW_TRACKING_URI": "",
        "DB_URI": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
        **(extra_env or {}),
    }
    port = common.free_port()
    team = Processes(tmp, env)
    try:
        server, server_log = team.start(
            [sys.executable, "-m", "sweeplab.tracking.server", "--port", str(port)], "server"
        )
        wait_for(server_log, "tracking server ready", server)
        yield team, port
    finally:
        team.stop()
        with admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def team_search(args, team: Processes, port: int) -> tuple[float, str]:
    """Chief and AGENTS agents, on the team's server; (seconds from the agents' start to the chief's end,
    search run id)."""
    tmp = team.tmp
    chief, chief_log = team.start(
        [
            sys.executable,
            "-m",
            "sweeplab",
            "tracking=server",
            f"tracking.uri=http://127.0.0.1:{port}",
            "tuner=random",
            "tuner.workers=0",
            f"tuner.max_trials={args.trials}",
            f"tuner.seed={args.tuner_seed}",
            f"trainer.epochs={args.epochs}",
            "trainer.verbose=0",
            "ensemble=none",
            f"state_dir={tmp / 'state'}",
        ],
        "chief",
    )
    command = wait_for(chief_log, r"agents join from any machine with:\n  (.+)\n", chief).group(1)
    begin = time.perf_counter()
    # This interpreter, whichever spelling the search prints (`python -m sweeplab.agent` or `sweeplab agent`).
    spelled = r" (python -m sweeplab\.agent|sweeplab agent) "
    command = re.sub(spelled, f" {sys.executable} -m sweeplab.agent ", command, count=1)
    for i in range(AGENTS):
        (tmp / f"agent{i}").mkdir()
        team.start(f"cd agent{i} && {command}", f"agent{i}", shell=True)
    if chief.wait() != 0:
        raise SystemExit(f"chief exited with {chief.returncode}:\n{chief_log.read_text()[-2000:]}")
    wall = time.perf_counter() - begin
    return wall, re.search(r"MLflow run (\w+)", chief_log.read_text()).group(1)


def agents(args) -> dict:
    """The search served to AGENTS agent processes, through a tracking server on PostgreSQL."""
    from mlflow import MlflowClient

    try:
        with team_server(Path(args.tmp)) as (team, port):
            wall, run_id = team_search(args, team, port)
            metrics = MlflowClient(f"http://127.0.0.1:{port}").get_run(run_id).data.metrics
    except Unavailable as why:
        return dict(skipped=str(why))
    return arm_result(wall, metrics)


def arm_result(wall: float, metrics: dict) -> dict:
    """An arm's figures from its search run's metrics: trials finished, trials per minute, best validation."""
    finished = int(metrics["trials_finished"])
    return dict(wall=wall, trials=finished, per_minute=60 * finished / wall, best_val=metrics["best_val_accuracy"])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tuner-seed", type=int, default=1)
    common.worker_args(parser)
    common.report_arg(parser)
    args, _ignored = parser.parse_known_args()  # make bench ARGS go to every script
    return args


def summarise(results: dict[str, list[dict]], arms: list[str] = ARMS) -> tuple[dict[str, float], list[list]]:
    """Trials per minute of each arm that ran (a skipped one says why), and the table's rows."""
    rows = []
    summary = {}
    for arm in arms:
        runs = [r for r in results[arm] if "skipped" not in r]
        if not runs:
            print(f"{arm}: skipped, {results[arm][0]['skipped']}")
            continue
        summary[arm] = common.mean(r["per_minute"] for r in runs)
        rows.append(
            [
                arm,
                common.mean(r["trials"] for r in runs),
                common.mean(r["wall"] for r in runs),
                summary[arm],
                common.mean(r["best_val"] for r in runs),
            ]
        )
    return summary, rows


def main() -> None:
    args = parse_args()
    if args.worker == "4-agents":
        common.finish_worker(args, agents(args))
        return
    if args.worker:
        common.heavy_imports()
        common.finish_worker(args, search(args, 1 if args.worker == "1-worker" else 2))
        return

    title = "scale"
    detail = (
        f"random search, mlp on digits, {args.trials} trials x up to {args.epochs} epochs, "
        f"1 vs 2 trial workers vs {AGENTS} agents on a PostgreSQL server, {args.repeats} run(s) per arm, "
        "alternating"
    )
    common.header(title, detail)
    results = common.alternate(__file__, ARMS, args.repeats, common.forward(args, ["trials", "epochs", "tuner_seed"]))
    summary, rows = summarise(results)
    line = (
        f"ratios: trials/min 2-workers/1-worker = {summary['2-workers'] / summary['1-worker']:.2f} "
        f"(ideal {min(2, os.cpu_count() or 1)}.00 on {os.cpu_count()} cores)"
    )
    if "4-agents" in summary:
        line += f"; 4-agents (PostgreSQL server)/1-worker = {summary['4-agents'] / summary['1-worker']:.2f}"
    common.publish(args, "scale", title, detail, ["arm", "trials", "wall s", "trials/min", "best val acc"], rows, line)


if __name__ == "__main__":
    main()
