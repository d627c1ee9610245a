"""Pruning: the same search with `pruner=none` and with `pruner=asha` (and median), at the same
trial budget and seeds: epochs trained, and the best validation and test accuracy.

Each arm is sweeplab's default search (mlp on digits, trials packed, early stopping on), so only
the pruner differs. The issue's bar: asha trains <= 0.5x the epochs of none, with the best
validation and test accuracy no worse than one validation sample (mean over the seeds).

    python bench/pruning.py                          # 24 trials x 30 epochs, seeds 1,2,3
    python bench/pruning.py --trials 8 --epochs 6 --seeds 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ARMS = ["none", "asha", "median"]


def search(args, pruner: str, seed: int) -> dict:
    from mlflow import MlflowClient

    from sweeplab import app

    overrides = [
        f"pruner={pruner}",
        *([f"pruner.{o}" for o in args.pruner_set] if pruner != "none" else []),
        f"tuner.max_trials={args.trials}",
        f"tuner.seed={seed}",
        f"trainer.epochs={args.epochs}",
        "trainer.verbose=0",
        "tracking.log_models=false",
        "ensemble=none",
        "leaderboard_rows=1",
        *common.temp_store(Path(args.tmp)),
    ]
    start = time.perf_counter()
    with common.quiet():
        result = app.run(common.compose(overrides), overrides=overrides)
    wall = time.perf_counter() - start
    client = MlflowClient(tracking_uri=result.tracking_uri)
    trials = client.search_runs(
        [result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    best = client.get_run(result.best_run_id)
    return dict(
        epochs=sum(t.data.metrics.get("epochs_trained", 0) for t in trials),
        pruned=sum("sweeplab.pruned" in t.data.tags for t in trials),
        best_val=result.best_score,
        test=best.data.metrics.get("test_accuracy"),
        val_samples=validation_samples(),
        wall=wall,
    )


def validation_samples() -> int:
    from sweeplab.config.validation import validate
    from sweeplab.data import datasets

    cfg = validate(common.compose([]))
    return len(datasets.load(cfg.data, cfg.seed).val.y)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {ARMS}")
    parser.add_argument(
        "--pruner-set", action="append", default=[], metavar="KEY=VALUE", help="a pruner setting (e.g. min_epochs=3)"
    )
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    common.worker_args(parser)
    common.report_arg(parser)
    args, _ignored = parser.parse_known_args()  # make bench ARGS go to every script
    return args


def run_seeds(args, arms: list[str], seeds: list[int]) -> dict[str, list[dict]]:
    """Every arm once per seed; the arms' order flips from one seed to the next."""
    forward = common.forward(args, ["trials", "epochs"]) + [f"--pruner-set={o}" for o in args.pruner_set]
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    for i, seed in enumerate(seeds):
        order = arms if i % 2 == 0 else arms[::-1]
        for arm, runs in common.alternate(__file__, order, 1, [*forward, "--seed", str(seed)]).items():
            results[arm] += runs
    return results


HEADERS = ["pruner", "epochs trained", "trials pruned", "best val acc", "test acc", "wall s"]


def summarise(arms: list[str], results: dict[str, list[dict]]) -> tuple[dict[str, dict], list[list]]:
    summary, rows = {}, []
    for arm in arms:
        runs = results[arm]
        s = summary[arm] = {key: common.mean(r[key] for r in runs) for key in runs[0]}
        rows.append([arm, s["epochs"], s["pruned"], s["best_val"], s["test"], s["wall"]])
    return summary, rows


def ratios(summary: dict[str, dict]) -> str:
    ref = summary.get("none")
    if not ref:
        return "ratios: n/a (no pruner=none arm to compare with)"
    parts = []
    for arm, s in summary.items():
        if arm == "none":
            continue
        # How many validation samples fewer (or more, negative) it gets right than pruner=none.
        val_lost = (ref["best_val"] - s["best_val"]) * ref["val_samples"]
        test_lost = (ref["test"] - s["test"]) * ref["val_samples"]
        parts.append(
            f"{arm}/none: epochs {s['epochs'] / ref['epochs']:.2f}, wall {s['wall'] / ref['wall']:.2f}, "
            f"best val acc {val_lost:+.1f} and test acc {test_lost:+.1f} validation samples lost"
        )
    return "ratios: " + "; ".join(parts)


def main() -> None:
    args = parse_args()
    if args.worker:
        common.heavy_imports()
        common.finish_worker(args, search(args, args.worker, args.seed))
        return
    arms = args.arms.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    title = "pruning"
    detail = (
        f"mlp on digits, {args.trials} trials x up to {args.epochs} epochs (packed, early stopping on), "
        f"seeds {seeds}, pruners with their defaults{''.join(f', {o}' for o in args.pruner_set)}; "
        "arms alternate within each seed"
    )
    common.header(title, detail)
    summary, rows = summarise(arms, run_seeds(args, arms, seeds))
    common.publish(args, "pruning", title, detail, HEADERS, rows, ratios(summary))


if __name__ == "__main__":
    main()
