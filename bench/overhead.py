"""Overhead and speed: the same random search as a bare Keras Tuner script
(no tracking) and through sweeplab with full tracking.

Arms (each a fresh process, alternating ABBA):
  bare           a hand-written Keras Tuner script: kt.RandomSearch over the
                 same space (sweeplab's mlp family builds the model), fit on
                 the NumPy arrays, batch 32, early stopping, Keras Tuner's
                 default per-epoch checkpointing, no MLflow.
  sweeplab       sweeplab.app.run on a composed config, full MLflow tracking
                 (child run per trial, epoch metrics, curves, summary, model),
                 with the default settings (trials packed: tuner.pack).
  sweeplab-2-workers  the same search with tuner.workers=2: two worker
                 processes train the trials (fit and tracking time are theirs,
                 so only wall time is reported for this arm).
  sweeplab-unpacked  the same with tuner.pack=1: one trial at a time.
  sweeplab-slow  the same with the fast trial path switched off
                 (steps_per_execution=1, tf_data=false, best_weights=checkpoint),
                 to show what that path buys.

Same data split (seed 42), space, trial budget, epochs, early stopping and
tuner seed in every arm.

    python bench/overhead.py                        # 20 trials x 20 epochs, 2 repeats
    python bench/overhead.py --trials 4 --epochs 5 --repeats 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ARMS = ["bare", "sweeplab", "sweeplab-2-workers", "sweeplab-unpacked", "sweeplab-slow"]
UNPACKED = ["tuner.pack=1"]
SLOW = [*UNPACKED, "trainer.steps_per_execution=1", "trainer.tf_data=false", "trainer.best_weights=checkpoint"]


def overrides(args) -> list[str]:
    return [
        "tuner=random",
        f"tuner.max_trials={args.trials}",
        f"tuner.seed={args.tuner_seed}",
        f"trainer.epochs={args.epochs}",
        "trainer.verbose=0",
    ]


def bare_hypermodel(cfg, dataset, family):
    """Keras Tuner's build function as a user writes it: sweeplab's family builds, compiled by hand."""
    import keras

    def build(hp):
        values = cfg.space.sample(hp)
        model = family.build(values, dataset, cfg.model)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=values["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    return build


def bare_search(tuner, dataset, cfg, args) -> None:
    """The hand-written search: fit on the NumPy arrays with early stopping, no tracking."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    with common.quiet():
        tuner.search(
            dataset.train.x,
            dataset.train.y,
            validation_data=(dataset.val.x, dataset.val.y),
            epochs=args.epochs,
            batch_size=cfg.trainer.batch_size,
            callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.trainer.early_stopping.patience)],
            verbose=0,
        )


def bare(args) -> dict:
    """What a user writes by hand with Keras Tuner, timed from tuner creation to best model scored."""
    import keras_tuner as kt

    from sweeplab.config.validation import validate
    from sweeplab.data import datasets as data_module
    from sweeplab.models import get_family

    cfg = validate(common.compose(overrides(args)))
    dataset = data_module.load(cfg.data, cfg.seed)
    build = bare_hypermodel(cfg, dataset, get_family(cfg.family))
    clock = common.clock_fit_and_tracking()

    start = time.perf_counter()
    tuner = kt.RandomSearch(
        build,
        objective="val_accuracy",
        max_trials=args.trials,
        seed=args.tuner_seed,
        directory=str(Path(args.tmp) / "kt"),
        project_name="bare",
    )
    bare_search(tuner, dataset, cfg, args)
    best = tuner.get_best_models(1)[0]
    test = best.evaluate(dataset.test.x, dataset.test.y, verbose=0, return_dict=True)["accuracy"]
    wall = time.perf_counter() - start
    trials = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    return dict(
        wall=wall,
        fit=clock.get("fit"),
        tracking=0.0,
        trials=len(trials),
        best_val=tuner.oracle.get_best_trials(1)[0].score,
        test=test,
    )


def sweeplab(args, extra: tuple = (), workers: int = 1) -> dict:
    from mlflow import MlflowClient

    from sweeplab import app

    store = common.temp_store(Path(args.tmp))
    # The bare arm builds no ensemble either.
    ov = [*overrides(args), *store, "leaderboard_rows=1", "ensemble=none", f"tuner.workers={workers}", *extra]
    cfg = common.compose(ov)
    clock = common.clock_fit_and_tracking()
    start = time.perf_counter()
    with common.quiet():
        result = app.run(cfg, overrides=ov)
    wall = time.perf_counter() - start
    best = MlflowClient(tracking_uri=result.tracking_uri).get_run(result.best_run_id)
    in_this_process = workers == 1
    return dict(
        wall=wall,
        fit=clock.get("fit") if in_this_process else None,
        tracking=clock.get("tracking") if in_this_process else None,
        trials=result.finished,
        best_val=result.best_score,
        test=best.data.metrics.get("test_accuracy"),
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each arm (ABBA order)")
    parser.add_argument("--tuner-seed", type=int, default=1)
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {ARMS}")
    common.worker_args(parser)
    common.report_arg(parser)
    args, _ignored = parser.parse_known_args()  # make bench ARGS go to every script
    return args


def run_worker(args) -> None:
    common.heavy_imports()
    arm = {
        "bare": bare,
        "sweeplab": sweeplab,
        "sweeplab-2-workers": lambda a: sweeplab(a, workers=2),
        "sweeplab-unpacked": lambda a: sweeplab(a, extra=UNPACKED),
        "sweeplab-slow": lambda a: sweeplab(a, extra=SLOW),
    }[args.worker]
    common.finish_worker(args, arm(args))


HEADERS = [
    "arm",
    "trials",
    "wall s",
    "s/trial",
    "fit s/trial",
    "overhead ms/trial",
    "tracking ms/trial",
    "tracking %",
    "best val acc",
    "test acc",
]


def summarise(arms: list[str], results: dict[str, list[dict]]) -> tuple[dict[str, dict], list[list]]:
    """Each arm's means over its runs, and the table's rows."""
    summary = {}
    rows = []
    for arm in arms:
        runs = results[arm]
        wall, fit, track = (common.mean(r[k] for r in runs) for k in ("wall", "fit", "tracking"))
        trials = common.mean(r["trials"] for r in runs)
        s = summary[arm] = dict(
            wall=wall,
            per_trial=wall / trials,
            overhead_ms=1000 * (wall - fit) / trials,
            tracking_ms=1000 * track / trials,
            tracking_share=track / wall,
            best_val=common.mean(r["best_val"] for r in runs),
            test=common.mean(r["test"] for r in runs),
        )
        rows.append(
            [
                arm,
                trials,
                wall,
                s["per_trial"],
                fit / trials,
                s["overhead_ms"],
                s["tracking_ms"],
                100 * s["tracking_share"],
                s["best_val"],
                s["test"],
            ]
        )
    return summary, rows


def ratios(summary: dict[str, dict]) -> str:
    if "bare" not in summary or "sweeplab" not in summary:
        return "ratios: n/a (they need the bare and sweeplab arms)"
    a, b = summary["bare"], summary["sweeplab"]
    line = (
        f"ratios: wall sweeplab/bare = {b['wall'] / a['wall']:.2f} (target <= 0.30); "
        f"best val acc sweeplab-bare = {b['best_val'] - a['best_val']:+.4f}; "
        f"test acc sweeplab-bare = {b['test'] - a['test']:+.4f}; "
        f"tracking share = {100 * b['tracking_share']:.1f}% (target < 2%); "
        f"overhead = {b['overhead_ms']:.0f} ms/trial (target < 100)"
    )
    if "sweeplab-2-workers" in summary:
        w = summary["sweeplab-2-workers"]
        line += (
            f"; wall sweeplab-2-workers/bare = {w['wall'] / a['wall']:.2f} (target <= 0.20), "
            f"best val acc 2-workers-bare = {w['best_val'] - a['best_val']:+.4f}, "
            f"test acc 2-workers-bare = {w['test'] - a['test']:+.4f}"
        )
    if "sweeplab-unpacked" in summary:
        line += f"; wall sweeplab/sweeplab-unpacked = {b['wall'] / summary['sweeplab-unpacked']['wall']:.2f}"
    if "sweeplab-slow" in summary:
        line += f"; wall sweeplab/sweeplab-slow = {b['wall'] / summary['sweeplab-slow']['wall']:.2f}"
    return line


def main() -> None:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    arms = args.arms.split(",")
    title = "overhead and speed"
    detail = (
        f"random search, mlp on digits, {args.trials} trials x up to {args.epochs} epochs, batch 32, "
        f"early stopping (patience 3), {args.repeats} run(s) per arm, alternating"
    )
    common.header(title, detail)
    results = common.alternate(__file__, arms, args.repeats, common.forward(args, ["trials", "epochs", "tuner_seed"]))
    summary, rows = summarise(arms, results)
    common.publish(args, "overhead", title, detail, HEADERS, rows, ratios(summary))


if __name__ == "__main__":
    main()
