"""The `sweeplab` command: one entry point for everything a person runs, so that
`sweeplab --help` lists it all. Each subcommand is imported only when it runs
(`--help` and a config error answer without TensorFlow or MLflow). The `python -m`
commands (`python -m sweeplab`, `python -m sweeplab.agent`, ...) run the same code."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from sweeplab.errors import command_boundary

# name -> (what it does, "module:function" that runs it with (argv, prog))
COMMANDS = {
    "search": ("one search (a multirun with -m), configured by Hydra overrides: key=value ...", "sweeplab.cli:search"),
    "agent": ("join a running search from any machine and train its trials", "sweeplab.agent:main"),
    "server": ("the team's MLflow tracking server, on PostgreSQL", "sweeplab.tracking.server:main"),
    "ui": ("MLflow's UI over the local store (or $MLFLOW_TRACKING_URI)", "sweeplab.tracking.ui:serve_main"),
    "tensorboard": ("TensorBoard over the per-trial logs (trainer.tensorboard=true)", "sweeplab.cli:tensorboard"),
    "report": ("leaderboard, ensembles and report plots of an experiment", "sweeplab.report.cli:main"),
    "ensemble": ("a weighted ensemble of an experiment's best finished trials", "sweeplab.ensemble.cli:main"),
}
# The configs ship inside the package (a wheel has no checkout around it). An absolute path:
# Hydra resolves a relative one against the caller, which differs between entry points.
CONF_DIR = str(Path(__file__).resolve().parent / "conf")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: sweeplab COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (text, _) in COMMANDS.items()]
    lines += [
        "",
        "`sweeplab COMMAND --help` for a command's own options, e.g. `sweeplab search --help`.",
        "`python -m sweeplab key=value ...` is `sweeplab search key=value ...`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from sweeplab import __version__

        print(f"sweeplab {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(
            f"sweeplab: unknown command {command!r}; expected one of {', '.join(COMMANDS)} (sweeplab --help)",
            file=sys.stderr,
        )
        return 2
    module, _, function = COMMANDS[command][1].partition(":")
    return getattr(importlib.import_module(module), function)(rest, prog=f"sweeplab {command}")


def search(argv: list[str], prog: str) -> int:
    """Hydra's command line: overrides, -m (multirun), --help, --cfg ... (Hydra reads sys.argv)."""
    import hydra

    # The groups' bases, registered here too: a `hydra.searchpath` given on the command line
    # replaces conf/config.yaml's entry that would import them.
    import sweeplab.config.store  # noqa: F401

    sys.argv = [prog, *argv]
    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(search_job)()
    return 0


def search_job(cfg) -> float | None:
    """One search (one job of a multirun): Hydra's task function. Its result is the best score, for a
    Hydra sweeper to optimize over searches; an error ends the process (Hydra ignores return values).
    In a multirun, each line the job prints (its error included) starts with its name."""
    from sweeplab.job_names import job_prefix
    from sweeplab.search.job_lines import prefixed

    with prefixed(job_prefix(cfg)):
        return _search_job(cfg)


# Ctrl-C: the trial and search runs are already marked KILLED; the tuner state is on disk.
@command_boundary(interrupted="interrupted; run the same command again to resume the search", exits=True)
def _search_job(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sweeplab.app import run

    hydra_cfg = HydraConfig.get()
    # In a multirun the ensemble is built once, across all jobs, at the end.
    result = run(cfg, overrides=list(hydra_cfg.overrides.task), build_ensemble=hydra_cfg.mode != RunMode.MULTIRUN)
    return result.best_score


def tensorboard(argv: list[str], prog: str) -> int:
    """TensorBoard over the trial logs (this process becomes TensorBoard)."""
    from sweeplab.config.schema import RootConfig

    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve the per-trial TensorBoard logs of searches run with "
        "trainer.tensorboard=true; Ctrl-C stops it.",
    )
    p.add_argument(
        "--logdir",
        default=RootConfig.state_dir,
        help="the searches' state_dir: <state_dir>/<experiment>/<search>/tensorboard/<trial> (default %(default)s)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=6006, help="(default %(default)s)")
    args = p.parse_args(argv)
    Path(args.logdir).mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            args.logdir,
            "--host",
            args.host,
            "--port",
            str(args.port),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
