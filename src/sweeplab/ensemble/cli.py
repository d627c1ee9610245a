"""`sweeplab ensemble` (or `python -m sweeplab.ensemble`): build, log and register an ensemble over an
experiment that already ran. Imports neither MLflow nor TensorFlow for `--help`.
"""

from __future__ import annotations

import argparse

from sweeplab.errors import EnsembleError, command_boundary
from sweeplab.tracking.store import add_store_arguments


def parser(prog: str = "python -m sweeplab.ensemble") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Build, log and register a weighted-average ensemble of an experiment's best finished trials: "
        "one per data set and task.",
    )
    add_store_arguments(p)
    p.add_argument("--top-k", type=int, default=5, help="candidates: the best K finished trials (default 5)")
    p.add_argument("--method", choices=["greedy", "optimize"], default="greedy", help="how weights are chosen")
    p.add_argument("--max-steps", type=int, default=20, help="greedy additions at most (default 20)")
    p.add_argument("--family", action="append", default=[], help="only trials of this family (repeatable)")
    p.add_argument("--search", metavar="RUN_ID", help="only trials of this search (parent) run")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="only trials with this tag")
    p.add_argument("--include-pruned", action="store_true", help="trials the oracle pruned may be members too")
    p.add_argument("--max-params", type=float, help="budget: the members' trainable parameters summed")
    p.add_argument("--max-latency-ms", type=float, help="budget: the members' batch-1 latencies (ms) summed")
    p.add_argument("--registered-model", metavar="NAME", help="Model Registry name (default: <experiment>-ensemble)")
    p.add_argument("--no-register", action="store_true", help="log the ensemble without registering it")
    return p


@command_boundary()
def main(argv: list[str] | None = None, prog: str = "python -m sweeplab.ensemble") -> int:
    args = parser(prog).parse_args(argv)
    tags = dict(_key_value(t) for t in args.tag)
    import mlflow

    from sweeplab.ensemble.builder import EnsembleResult, Filters, Settings, budget_of, build_groups
    from sweeplab.tracking.queries import objective_of
    from sweeplab.tracking.store import open_experiment

    client, uri, experiment_id = open_experiment(args.tracking_uri, args.experiment)
    # The registry finds a logged model (`models:/<id>`) in MLflow's global store: this one.
    mlflow.set_tracking_uri(uri)
    objective, maximize = objective_of(args, client, experiment_id)
    outcomes = build_groups(
        client,
        experiment_id,
        Settings(
            objective,
            maximize,
            args.top_k,
            args.method,
            args.max_steps,
            budget_of(args.max_params, args.max_latency_ms),
        ),
        filters=Filters(args.family, args.search, tags, args.include_pruned),
        registered_model=None if args.no_register else (args.registered_model or f"{args.experiment}-ensemble"),
    )
    if not any(isinstance(o, EnsembleResult) for o in outcomes):
        raise EnsembleError("no ensemble could be built: " + "; ".join(f"{o.group}: {o.reason}" for o in outcomes))
    for outcome in outcomes:
        print(outcome.describe())
    return 0


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise EnsembleError(f"--tag: got {text!r}; expected KEY=VALUE")
    return key, value
