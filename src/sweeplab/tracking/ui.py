"""The MLflow UI: the address that opens an experiment's runs table, what to
type to start the UI over a store, and (`python -m sweeplab.tracking.ui`, run
by `make ui`) the store it opens with the address of each of its experiments.

MLflow 3.17's UI opens an experiment on its GenAI pages (traces, token usage),
where runs do not show. Its view comes from the address (`workflowType`), else
from the user's last choice of "GenAI" / "Model training", never from the
experiment, so the addresses ask for the machine-learning view. Experiments
also carry the kind tag below, declaring them machine learning, not a GenAI
app: the UI's own kind setting, which its views without that switch follow.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlsplit, urlunsplit

from sweeplab.errors import one_line
from sweeplab.tracking.store import display_uri, resolve_uri, sqlite_path

# Where `make ui` serves a local store (its HOST and PORT defaults).
LOCAL_UI = "http://127.0.0.1:5000"


def is_server(uri: str) -> bool:
    """A tracking server serves its own UI; any other store needs `mlflow ui` started over it."""
    return uri.startswith(("http://", "https://"))


def runs_address(uri: str, experiment_id: str, local_ui: str = LOCAL_UI) -> str:
    """The browser address of the experiment's runs table; a server's credentials left out
    (the browser asks for them)."""
    base = _without_credentials(uri) if is_server(uri) else local_ui
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _without_credentials(uri: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def start_command(uri: str, default_uri: str | None = None) -> str:
    """What to type to serve a local store: `make ui` opens the default one, else $MLFLOW_TRACKING_URI."""
    if display_uri(uri) == display_uri(default_uri or resolve_uri(None)):
        return "make ui"
    return f"MLFLOW_TRACKING_URI='{display_uri(uri)}' make ui"


def browse_hint(uri: str, experiment_id: str, default_uri: str | None = None) -> str:
    """The lines that end a sweep: where its runs are, and how to start the UI if it needs starting."""
    hint = f"\nBrowse the runs: {runs_address(uri, experiment_id)}"
    if not is_server(uri):
        hint += f"\n  (start the UI first: {start_command(uri, default_uri)})"
    return hint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sweeplab.tracking.ui",
        description="Print the MLflow store `make ui` opens and the runs-table address of each of its experiments.",
    )
    p.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the SQLite store under ./mlruns)",
    )
    p.add_argument("--local-ui", default=LOCAL_UI, help=f"where the UI over a local store listens (default {LOCAL_UI})")
    args = p.parse_args(argv)
    uri = resolve_uri(args.tracking_uri)
    if is_server(uri):
        print(f"MLflow tracking server {display_uri(uri)}: it serves its own UI, nothing to start.")
    else:
        print(f"MLflow store: {display_uri(uri)}, UI at {args.local_ui}")
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        print("  no experiments yet (no sweep has logged to it)")
        return 0
    for experiment in _experiments(uri):
        print(f"  {experiment.name}: {runs_address(uri, experiment.experiment_id, args.local_ui)}")
    return 0


def _experiments(uri: str) -> list:
    """The store's active experiments; none, and a note, when they cannot be read."""
    from mlflow import MlflowClient

    from sweeplab.tracking.store import _fast_http

    try:
        with _fast_http():
            return MlflowClient(tracking_uri=uri).search_experiments()
    except Exception as err:  # an unreachable server, say: the store's own address is printed already
        print(f"  cannot list its experiments: {one_line(str(err))}")
        return []


if __name__ == "__main__":
    sys.exit(main())
