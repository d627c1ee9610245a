"""Does memory stay flat across the trials of one search?

Runs one random search of many tiny trials in this process (real Keras Tuner,
real MLflow store in a temporary folder) and reads the process's resident memory
after every trial. Prints peak RSS after trial `--early` and after the last
trial, and their ratio; exits 1 if growth exceeds `--max-growth`.

    PYTHONPATH=src python bench/memory.py                # 50 trials, compare 5 vs 50
    PYTHONPATH=src python bench/memory.py --trials 12 --early 3 --epochs 1   # quick check

Keras Tuner users report RAM growing across trials (keras-tuner #873, #1031):
this is the number to watch when the trial loop changes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--early", type=int, default=5, help="the trial to compare the last one with")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--log-models", action="store_true", help="also log each trial's model (slower)")
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed peak RSS growth, as a fraction")
    args, _ignored = parser.parse_known_args()  # make bench ARGS go to every script
    if not 1 <= args.early < args.trials:
        parser.error("--early must be between 1 and --trials - 1")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from hydra import compose, initialize_config_dir

    from sweeplab import app
    from sweeplab.search import tuning

    samples: list[tuple[float, float]] = []
    run_trial = tuning.TrackedTrials.run_trial

    def measured(self, trial, *a, **kw):
        try:
            return run_trial(self, trial, *a, **kw)
        finally:
            samples.append(rss_mb())
            current, peak = samples[-1]
            print(f"[memory] trial {len(samples):3d}: rss {current:7.1f} MiB, peak {peak:7.1f} MiB", flush=True)

    tuning.TrackedTrials.run_trial = measured  # measure, change nothing else

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db",
            f"state_dir={tmp}/state",
            "tracking.experiment=bench-memory",
            f"tracking.log_models={str(args.log_models).lower()}",
            f"tuner.max_trials={args.trials}",
            # Retrying the same point is not what we measure: let every trial be new.
            f"tuner.max_consecutive_failed_trials={args.trials}",
            f"trainer.epochs={args.epochs}",
            "trainer.verbose=0",
            "leaderboard_rows=3",
            "ensemble=none",
        ]
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        started = time.monotonic()
        app.run(cfg, overrides)
        elapsed = time.monotonic() - started

    if len(samples) < args.trials:
        print(f"[memory] only {len(samples)} trials ran (the space may be smaller than --trials)")
        return 1
    early, last = samples[args.early - 1][1], samples[-1][1]
    ratio = last / early
    print(
        f"\npeak RSS after trial {args.early}: {early:.1f} MiB; after trial {len(samples)}: {last:.1f} MiB; "
        f"ratio {ratio:.3f} (limit {1 + args.max_growth:.2f}); {elapsed:.0f} s"
    )
    return 0 if ratio <= 1 + args.max_growth else 1


if __name__ == "__main__":
    sys.exit(main())
