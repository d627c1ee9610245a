"""Does memory stay flat across the trials of one search, and across searches?

Runs one random search of many tiny trials in this process (real Keras Tuner,
real MLflow store in a temporary folder) and reads the process's resident memory
after every trial. Prints peak RSS after trial `--early` and after the last
trial, and their ratio. Then runs `--searches` more searches one after another
in the same process, as a multirun does, and prints peak RSS after the first
and after the last of them (and the objects left frozen out of the garbage
collector, which must be none). Exits 1 if either growth exceeds `--max-growth`.

    PYTHONPATH=src python bench/memory.py                # 50 trials, compare 5 vs 50; then 3 searches
    PYTHONPATH=src python bench/memory.py --trials 12 --early 3 --epochs 1 --searches 2   # quick check

Keras Tuner users report RAM growing across trials (keras-tuner #873, #1031):
this is the number to watch when the trial loop changes.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--early", type=int, default=5, help="the trial to compare the last one with")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--log-models", action="store_true", help="also log each trial's model (slower)")
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed peak RSS growth, as a fraction")
    parser.add_argument("--searches", type=int, default=3, help="searches in one process, as a multirun (0: skip)")
    parser.add_argument("--search-trials", type=int, default=5, help="trials of each of those searches")
    common.report_arg(parser)
    args, _ignored = parser.parse_known_args()  # make bench ARGS go to every script
    if not 1 <= args.early < args.trials:
        parser.error("--early must be between 1 and --trials - 1")
    return args


def sample_after_every_trial() -> list[tuple[float, float]]:
    """(current, peak) RSS after each recorded trial, appended as the search runs."""
    from sweeplab.search import tuning

    samples: list[tuple[float, float]] = []
    # Every finished trial is recorded, one at a time or in a pack (tuner.pack).
    record_trial = tuning.TrackedTrials.record_trial

    def measured(self, trial, *a, **kw):
        try:
            return record_trial(self, trial, *a, **kw)
        finally:
            samples.append(rss_mb())
            current, peak = samples[-1]
            print(f"[memory] trial {len(samples):3d}: rss {current:7.1f} MiB, peak {peak:7.1f} MiB", flush=True)

    tuning.TrackedTrials.record_trial = measured  # measure, change nothing else
    return samples


def search(args, tmp: str, trials: int, seed: int) -> None:
    from hydra import compose, initialize_config_dir

    from sweeplab import app

    overrides = [
        f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db",
        f"state_dir={tmp}/state",
        "tracking.experiment=bench-memory",
        f"tracking.log_models={str(args.log_models).lower()}",
        f"tuner.max_trials={trials}",
        f"tuner.seed={seed}",  # another seed: another search
        # Retrying the same point is not what we measure: let every trial be new.
        f"tuner.max_consecutive_failed_trials={trials}",
        f"trainer.epochs={args.epochs}",
        "trainer.verbose=0",
        "leaderboard_rows=3",
        "ensemble=none",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "src" / "sweeplab" / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    app.run(cfg, overrides)


def across_searches(args, tmp: str) -> tuple[list[float], bool]:
    """Peak RSS after each of --searches more searches in this process; ok when nothing stays frozen."""
    ends, ok = [], True
    for index in range(args.searches):
        search(args, tmp, args.search_trials, seed=100 + index)
        ends.append(rss_mb()[1])
        print(
            f"[memory] search {index + 1} of {args.searches}: peak {ends[-1]:7.1f} MiB, "
            f"{gc.get_freeze_count()} objects left frozen",
            flush=True,
        )
        ok = ok and gc.get_freeze_count() == 0
    return ends, ok


def detail(args) -> str:
    return (
        f"one random search of {args.trials} trials x {args.epochs} epochs in one process, then {args.searches} "
        f"searches of {args.search_trials} trials; log models: {args.log_models}"
    )


def main() -> int:
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    samples = sample_after_every_trial()
    limit = 1 + args.max_growth
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        search(args, tmp, args.trials, seed=1)
        elapsed = time.monotonic() - started
        if len(samples) < args.trials:
            print(f"[memory] only {len(samples)} trials ran (the space may be smaller than --trials)")
            return 1
        early, last, trials_run = samples[args.early - 1][1], samples[-1][1], len(samples)
        ratio = last / early
        print(
            f"\npeak RSS after trial {args.early}: {early:.1f} MiB; after trial {trials_run}: {last:.1f} MiB; "
            f"ratio {ratio:.3f} (limit {limit:.2f}); {elapsed:.0f} s"
        )
        ends, ok = across_searches(args, tmp)
        ok = ok and ratio <= limit
    rows = [[f"after trial {args.early}", early], [f"after trial {trials_run}", last]]
    ratios = f"ratios: trials {ratio:.3f}"
    if args.searches > 1:
        across = ends[-1] / ends[0]
        print(
            f"peak RSS after search 1: {ends[0]:.1f} MiB; after search {args.searches}: {ends[-1]:.1f} MiB; "
            f"ratio {across:.3f} (limit {limit:.2f})"
        )
        ok = ok and across <= limit
        rows += [["after search 1", ends[0]], [f"after search {args.searches}", ends[-1]]]
        ratios += f", searches {across:.3f}"
    common.publish(
        args,
        "memory",
        "memory across trials and searches",
        detail(args),
        ["peak RSS", "MiB"],
        rows,
        f"{ratios} (limit {limit:.2f})",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
