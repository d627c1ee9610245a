"""Ensemble gain: test accuracy of the weighted ensemble vs the best single
trial, on the default sweep (its three families, one search each, then one
ensemble across them, as `make sweep` does).

    python bench/ensemble.py
    python bench/ensemble.py --args "tuner.max_trials=4 trainer.epochs=5"
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

FAMILIES = ("mlp", "inception", "residual")


def measure(extra: list[str]) -> dict:
    """Run the default sweep's searches into a temp store, then one ensemble across them."""
    from mlflow import MlflowClient

    from sweeplab import app
    from sweeplab.config.validation import validate
    from sweeplab.ensemble import builder as ensemble

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for family in FAMILIES:
            ov = ["sweep=default", f"model={family}", *common.temp_store(Path(tmp)), "leaderboard_rows=1", *extra]
            with common.quiet():
                result = app.run(common.compose(ov), overrides=ov, build_ensemble=False)
        client = MlflowClient(tracking_uri=result.tracking_uri)
        with common.quiet():
            built = ensemble.build_for_search(validate(common.compose(ov)), client, result.experiment_id)
        wall = time.perf_counter() - start
        metrics = client.get_run(built.run_id).data.metrics
        return dict(best=metrics["best_member_test_accuracy"], ensemble=metrics["ensemble_test_accuracy"], wall=wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--args", default="", help="extra Hydra overrides for the sweep")
    parser.add_argument("--trials", type=int, help="tuner.max_trials of the sweep")
    parser.add_argument("--epochs", type=int, help="trainer.epochs of the sweep")
    common.report_arg(parser)
    args, _ignored = parser.parse_known_args()  # make bench ARGS go to every script
    title, detail = "ensemble gain", "default sweep; weighted-average ensemble vs best single trial, test accuracy"
    common.header(title, detail)
    sys.path.insert(0, str(common.ROOT / "src"))
    extra = shlex.split(args.args)
    extra += [f"tuner.max_trials={args.trials}"] if args.trials else []
    extra += [f"trainer.epochs={args.epochs}"] if args.epochs else []
    r = measure(extra)
    print(f"sweep and ensemble: {r['wall']:.1f} s")
    rows = [["best single trial", r["best"]], ["ensemble", r["ensemble"]]]
    ratios = f"ratios: test acc ensemble/best = {r['ensemble'] / r['best']:.4f} (sweep and ensemble: {r['wall']:.1f} s)"
    common.publish(args, "ensemble", title, detail, ["model", "test acc"], rows, ratios)


if __name__ == "__main__":
    main()
