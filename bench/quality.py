"""Search quality at an equal trial budget: sweeplab's tuners (random,
Bayesian, Hyperband) vs Optuna's TPE over the same space, a few seeds.

Every arm trains with sweeplab's own training path (same model code, same
compile, same tf.data feed, early stopping), so only the search algorithm
differs. Optuna lives in the bench-only extra (`pip install -e '.[bench]'`);
without it the TPE arm is skipped with a message. Optuna uses in-memory
storage: its SQLite storage has broken under SQLAlchemy 2.1 in releases a
resolver may pick, and nothing here needs a study to outlive the process.

Reported per arm, averaged over seeds: best validation accuracy, test
accuracy of that best trial, trials run, search wall time, and the time until
a trial first reached the target validation accuracy.
Hyperband's budget is epochs, not trials: it gets max_epochs = --epochs and
runs as many trials as its brackets hold (shown in the table).

    python bench/quality.py                               # 20 trials, seeds 1,2,3
    python bench/quality.py --trials 4 --epochs 5 --seeds 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ARMS = ["random", "bayesian", "hyperband", "optuna-tpe"]


def base_overrides(args, seed: int) -> list[str]:
    return [
        f"tuner.max_trials={args.trials}",
        f"tuner.seed={seed}",
        f"trainer.epochs={args.epochs}",
        "trainer.verbose=0",
    ]


def time_to_target(events: list[tuple[float, float]], target: float) -> float | None:
    """events: (seconds since the search started, val accuracy) per finished trial."""
    for seconds, score in sorted(events):
        if score is not None and score >= target:
            return seconds
    return None


def sweeplab_arm(args, kind: str, seed: int) -> dict:
    from mlflow import MlflowClient

    from sweeplab import app

    store = common.temp_store(Path(args.tmp))
    ov = [
        f"tuner={kind}",
        *base_overrides(args, seed),
        *store,
        "leaderboard_rows=1",
        "tracking.log_models=false",
        "ensemble=none",
    ]
    if kind == "hyperband":
        ov.append(f"tuner.max_epochs={args.epochs}")
    start_wall = time.time()
    start = time.perf_counter()
    with common.quiet():
        result = app.run(common.compose(ov), overrides=ov)
    wall = time.perf_counter() - start
    client = MlflowClient(tracking_uri=result.tracking_uri)
    trials = client.search_runs(
        [result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    events = [((t.info.end_time or 0) / 1000 - start_wall, t.data.metrics.get("final_val_accuracy")) for t in trials]
    best = client.get_run(result.best_run_id)
    return dict(
        best_val=result.best_score,
        test=best.data.metrics.get("test_accuracy"),
        trials=result.finished,
        wall=wall,
        to_target=time_to_target(events, args.target),
    )


def suggest(trial, space) -> dict:
    """One Optuna trial's values for sweeplab's search space (fixed entries as they are)."""
    values = dict(space.rule_defaults)
    for name, spec in space.hyperparameters.items():
        if spec.is_fixed:
            values[name] = spec.fixed
        elif spec.type == "int":
            values[name] = trial.suggest_int(
                name, int(spec.min), int(spec.max), step=int(spec.step or 1), log=spec.sampling == "log"
            )
        elif spec.type == "float":
            log = spec.sampling == "log"
            values[name] = trial.suggest_float(name, spec.min, spec.max, step=None if log else spec.step, log=log)
        elif spec.type == "choice":
            values[name] = trial.suggest_categorical(name, list(spec.values))
        else:
            values[name] = trial.suggest_categorical(name, [True, False])
    return values


def train_trial(trial, cfg, dataset, family, train, val, epochs: int):
    """One Optuna trial trained as sweeplab trains one: the model with its best epoch's weights, and that score."""
    import keras
    import keras_tuner as kt

    from sweeplab.search import training
    from sweeplab.search.tuning import BestEpochInMemory

    keras.backend.clear_session()
    values = suggest(trial, cfg.space)
    model = family.build(values, dataset, cfg.model)
    training.compile_model(model, values, dataset, cfg.trainer)
    keeper = BestEpochInMemory(kt.Objective("val_accuracy", "max"), filepath=None)
    model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        verbose=0,
        callbacks=[*training.callbacks(cfg.trainer), keeper],
    )
    model.set_weights(keeper.weights)
    return model, keeper.best_value


def optuna_arm(args, seed: int) -> dict:
    try:
        import optuna
    except ImportError:
        return dict(skipped="optuna is not installed (pip install -e '.[bench]' or make bench)")
    import keras

    from sweeplab.config.validation import validate
    from sweeplab.data import datasets as data_module
    from sweeplab.models import get_family
    from sweeplab.search import training

    cfg = validate(common.compose(base_overrides(args, seed)))
    dataset = data_module.load(cfg.data, cfg.seed)
    family = get_family(cfg.family)
    train, val = training.fit_data(dataset, cfg.trainer, cfg.seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = {"val": None, "test": None}
    events = []

    def objective(trial) -> float:
        model, score = train_trial(trial, cfg, dataset, family, train, val, args.epochs)
        events.append((time.perf_counter() - start, score))
        if best["val"] is None or score > best["val"]:
            best["val"] = score
            best["test"] = model.evaluate(dataset.test.x, dataset.test.y, verbose=0, return_dict=True)["accuracy"]
        return score

    keras.utils.set_random_seed(cfg.seed)
    start = time.perf_counter()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=args.trials)
    wall = time.perf_counter() - start
    return dict(
        best_val=best["val"],
        test=best["test"],
        trials=len(study.trials),
        wall=wall,
        to_target=time_to_target(events, args.target),
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--target", type=float, default=0.97, help="validation accuracy for time-to-target")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {ARMS}")
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    common.worker_args(parser)
    common.report_arg(parser)
    args, _ignored = parser.parse_known_args()  # make bench ARGS go to every script
    return args


def run_worker(args) -> None:
    common.heavy_imports()
    if args.worker == "optuna-tpe":
        result = optuna_arm(args, args.seed)
    else:
        result = sweeplab_arm(args, args.worker, args.seed)
    common.finish_worker(args, result)


def run_seeds(args, arms: list[str], seeds: list[int]) -> dict[str, list[dict]]:
    """Every arm once per seed; the arms' order flips from one seed to the next."""
    forward = common.forward(args, ["trials", "epochs", "target"])
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    for i, seed in enumerate(seeds):
        for arm, runs in common.alternate(
            __file__, arms if i % 2 == 0 else arms[::-1], 1, [*forward, "--seed", str(seed)]
        ).items():
            results[arm] += runs
    return results


HEADERS = ["arm", "trials", "best val acc", "test acc", "wall s", "s to target", "seeds reaching"]


def summarise(arms: list[str], results: dict[str, list[dict]]) -> tuple[dict[str, dict], list[list]]:
    """Each arm's means over the seeds (arms that were skipped say why), and the table's rows."""
    rows, summary = [], {}
    for arm in arms:
        runs = [r for r in results[arm] if "skipped" not in r]
        if not runs:
            print(f"{arm}: skipped: {results[arm][0]['skipped']}")
            continue
        reached = [r["to_target"] for r in runs if r["to_target"] is not None]
        s = summary[arm] = dict(
            best_val=common.mean(r["best_val"] for r in runs),
            test=common.mean(r["test"] for r in runs),
            trials=common.mean(r["trials"] for r in runs),
            wall=common.mean(r["wall"] for r in runs),
            to_target=common.mean(reached),
            reached=f"{len(reached)}/{len(runs)}",
        )
        rows.append([arm, s["trials"], s["best_val"], s["test"], s["wall"], s["to_target"], s["reached"]])
    return summary, rows


def ratios(summary: dict[str, dict]) -> str:
    ref = summary.get("optuna-tpe")
    if not ref:
        return "ratios: n/a (no optuna-tpe arm to compare with)"
    parts = [
        f"{arm}/optuna-tpe: val {s['best_val'] / ref['best_val']:.3f}, test {s['test'] / ref['test']:.3f}, "
        f"wall {s['wall'] / ref['wall']:.2f}"
        for arm, s in summary.items()
        if arm != "optuna-tpe"
    ]
    return "ratios: " + "; ".join(parts)


def main() -> None:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    arms = args.arms.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    title = "search quality"
    detail = (
        f"mlp on digits, {args.trials} trials x up to {args.epochs} epochs, seeds {seeds}, "
        f"target val acc {args.target}; arms alternate within each seed"
    )
    common.header(title, detail)
    summary, rows = summarise(arms, run_seeds(args, arms, seeds))
    common.publish(args, "quality", title, detail, HEADERS, rows, ratios(summary))


if __name__ == "__main__":
    main()
