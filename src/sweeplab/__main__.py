"""`python -m sweeplab key=value ...`: one search, configured by Hydra, as `sweeplab search
key=value ...`; `python -m sweeplab COMMAND ...` runs any other command of `sweeplab`."""

import sys

from sweeplab.cli import COMMANDS, main, search


def run_module(argv: list[str]) -> int:
    """A first word naming a command runs that command; anything else is Hydra's command line
    (an override always holds '=' or starts with '-', '+' or '~', so no search reads as a command)."""
    if argv and argv[0] in COMMANDS:
        return main(argv)
    return search(argv, prog=sys.argv[0])


if __name__ == "__main__":
    sys.exit(run_module(sys.argv[1:]))
