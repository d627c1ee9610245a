"""Scale: trials per minute with 1 and with 2 parallel worker processes.

Arm `1-worker`: one process runs a random search of --trials trials.
Arm `2-workers`: two processes start together, each a random search of
--trials/2 trials with its own tuner seed, both tracking into the same MLflow
store and experiment (created once, before they start, as DESIGN.md advises
for parallel jobs on one SQLite store). This is process-level parallelism, what
a Hydra joblib multirun does; TensorFlow gets cores/workers threads per process.

Throughput = trials finished / (last search end - first search start), from
inside the workers, so interpreter start and imports are not counted.

    python bench/scale.py                               # 20 trials, 2 repeats
    python bench/scale.py --trials 4 --epochs 5 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ARMS = ["1-worker", "2-workers"]


def search_worker(args) -> dict:
    """One search process: waits for the shared start signal, then searches."""
    import tensorflow as tf

    threads = max(1, (os.cpu_count() or 1) // args.workers)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from sweeplab import app

    ov = [
        "tuner=random", f"tuner.max_trials={args.trials}", f"tuner.seed={args.tuner_seed}",
        f"trainer.epochs={args.epochs}", "trainer.verbose=0", "leaderboard_rows=1", "ensemble=none",
        f"tracking.uri={args.uri}", "tracking.experiment=bench-scale", f"state_dir={args.tmp}/state",
    ]
    cfg = common.compose(ov)
    start_file = Path(args.tmp) / "go"
    (Path(args.tmp) / f"ready-{args.tuner_seed}").touch()
    while not start_file.exists():
        time.sleep(0.01)
    start = time.time()
    with common.quiet():
        result = app.run(cfg, overrides=ov)
    return dict(start=start, end=time.time(), trials=result.finished)


def run_workers(args, workers: int) -> dict:
    """`workers` search processes released together; throughput from their clocks."""
    with tempfile.TemporaryDirectory() as tmp:
        store = common.temp_store(Path(tmp), experiment="bench-scale")
        uri = store[0].split("=", 1)[1]
        per_worker = args.trials // workers
        procs, outs = [], []
        for w in range(workers):
            out = Path(tmp) / f"result-{w}.json"
            outs.append(out)
            cmd = [sys.executable, __file__, "--worker", "search", "--result", str(out), "--tmp", tmp,
                   "--trials", str(per_worker), "--epochs", str(args.epochs), "--tuner-seed", str(w + 1),
                   "--workers", str(workers), "--uri", uri]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(common.ROOT / "src"), os.environ.get("PYTHONPATH")]))}
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        while len(list(Path(tmp).glob("ready-*"))) < workers:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        (Path(tmp) / "go").touch()
        for p in procs:
            output, _ = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"a worker failed (exit {p.returncode}):\n" + "\n".join(output.splitlines()[-25:]))
        results = [json.loads(o.read_text()) for o in outs]
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    trials = sum(r["trials"] for r in results)
    return dict(span=span, trials=trials, per_minute=60 * trials / span)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tuner-seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    common.worker_args(parser)
    args, _ignored = parser.parse_known_args()  # make bench ARGS go to every script

    if args.worker == "search":
        common.heavy_imports()
        common.finish_worker(args, search_worker(args))
        return

    common.header(
        "scale",
        f"random search, mlp on digits, {args.trials} trials x up to {args.epochs} epochs in all, "
        f"1 vs 2 worker processes, {args.repeats} run(s) per arm, alternating",
    )
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for i, arm in enumerate(common.abba(ARMS, args.repeats), 1):
        print(f"  [{i}/{2 * args.repeats}] {arm} ...", end="", flush=True)
        results[arm].append(run_workers(args, 1 if arm == "1-worker" else 2))
        print(f" {results[arm][-1]['span']:.0f} s", flush=True)
    rows = []
    summary = {}
    for arm in ARMS:
        runs = results[arm]
        summary[arm] = common.mean(r["per_minute"] for r in runs)
        rows.append([arm, common.mean(r["trials"] for r in runs), common.mean(r["span"] for r in runs), summary[arm]])
    print()
    print(common.table(["arm", "trials", "wall s", "trials/min"], rows))
    print(f"ratios: trials/min 2-workers/1-worker = {summary['2-workers'] / summary['1-worker']:.2f} "
          f"(ideal {min(2, os.cpu_count() or 1)}.00 on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
