"""The `sweeplab` command: one entry point whose subcommands are the
documented `python -m sweeplab...` commands, so `sweeplab --help` lists them all."""

from __future__ import annotations

import sys

# name -> (what it does, the module whose `python -m` it stands for)
COMMANDS = {
    "search": ("one search (or a multirun with -m), configured by Hydra overrides", "sweeplab"),
    "ensemble": ("a weighted ensemble of an experiment's best finished trials", "sweeplab.ensemble"),
    "report": ("leaderboard, ensembles and report plots of an experiment", "sweeplab.report"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: sweeplab COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}  (python -m {module})" for name, (text, module) in COMMANDS.items()]
    lines += ["", "`sweeplab COMMAND --help` for a command's own options, e.g. `sweeplab search --help`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"sweeplab: unknown command {command!r}; expected one of {list(COMMANDS)}\n\n{usage()}", file=sys.stderr)
        return 2
    if command == "ensemble":
        from sweeplab.ensemble.cli import main as ensemble_main

        return ensemble_main(rest)
    if command == "report":
        from sweeplab.report.cli import main as report_main

        return report_main(rest)
    # Hydra reads its overrides from sys.argv.
    from sweeplab.__main__ import main as search_main

    sys.argv = [f"{sys.argv[0]} search", *rest]
    search_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
