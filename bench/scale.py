"""Scale: trials per minute of one search with 1 and with 2 trial workers.

Arm `1-worker`: a random search of --trials trials in one process (tuner.workers=1).
Arm `2-workers`: the same search with tuner.workers=2: this process serves
Keras Tuner's oracle and two worker processes train the trials, each with half
the cores for TensorFlow, all tracking into the same MLflow store.

Throughput = finished trials / wall time of the search, from inside the arm's
process after its imports; the workers' own start-up (imports, data) counts,
since a user waits for it too.

    python bench/scale.py                               # 20 trials, 2 repeats
    python bench/scale.py --trials 4 --epochs 5 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ARMS = ["1-worker", "2-workers"]


def search(args, workers: int) -> dict:
    from sweeplab import app

    store = common.temp_store(Path(args.tmp), experiment="bench-scale")
    ov = [
        "tuner=random", f"tuner.max_trials={args.trials}", f"tuner.seed={args.tuner_seed}",
        f"tuner.workers={workers}", f"trainer.epochs={args.epochs}", "trainer.verbose=0",
        "leaderboard_rows=1", "ensemble=none", *store,
    ]
    cfg = common.compose(ov)
    start = time.perf_counter()
    with common.quiet():
        result = app.run(cfg, overrides=ov)
    wall = time.perf_counter() - start
    return dict(wall=wall, trials=result.finished, per_minute=60 * result.finished / wall, best_val=result.best_score)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tuner-seed", type=int, default=1)
    common.worker_args(parser)
    args, _ignored = parser.parse_known_args()  # make bench ARGS go to every script

    if args.worker:
        common.heavy_imports()
        common.finish_worker(args, search(args, 1 if args.worker == "1-worker" else 2))
        return

    common.header(
        "scale",
        f"random search, mlp on digits, {args.trials} trials x up to {args.epochs} epochs, "
        f"1 vs 2 trial workers, {args.repeats} run(s) per arm, alternating",
    )
    results = common.alternate(__file__, ARMS, args.repeats, common.forward(args, ["trials", "epochs", "tuner_seed"]))
    rows = []
    summary = {}
    for arm in ARMS:
        runs = results[arm]
        summary[arm] = common.mean(r["per_minute"] for r in runs)
        rows.append([arm, common.mean(r["trials"] for r in runs), common.mean(r["wall"] for r in runs), summary[arm],
                     common.mean(r["best_val"] for r in runs)])
    print()
    print(common.table(["arm", "trials", "wall s", "trials/min", "best val acc"], rows))
    print(f"ratios: trials/min 2-workers/1-worker = {summary['2-workers'] / summary['1-worker']:.2f} "
          f"(ideal {min(2, os.cpu_count() or 1)}.00 on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
