"""The MLflow UI: the address that opens an experiment's runs table, what to
type to start the UI over a store, the store it opens with the address of each
of its experiments (`python -m sweeplab.tracking.ui`), and the UI itself over a
local store (`sweeplab ui`, run by `make ui`).

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

from sweeplab.errors import command_boundary, one_line
from sweeplab.tracking.store import add_tracking_uri_argument, display_uri, resolve_uri, sqlite_path

# Where `sweeplab ui` (and `make ui`) serves a local store by default.
HOST, PORT = "127.0.0.1", 5000
LOCAL_UI = f"http://{HOST}:{PORT}"
UI_PROBE_S = 0.5  # how long the end of a sweep waits to learn whether a UI answers


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
    """What to type to serve a local store: `sweeplab ui` (or `make ui`) opens the default one;
    another is named."""
    if display_uri(uri) == display_uri(default_uri or resolve_uri(None)):
        return "sweeplab ui (or make ui)"
    shown = display_uri(uri)
    return f"sweeplab ui --tracking-uri '{shown}' (or MLFLOW_TRACKING_URI='{shown}' make ui)"


def browse_hint(uri: str, experiment_id: str, default_uri: str | None = None, local_ui: str = LOCAL_UI) -> str:
    """The lines that end a sweep: the address of its runs, to open at once when a UI answers there
    (a tracking server, which the sweep just used, or a UI already started at `local_ui`), else with
    the command that starts one."""
    address = runs_address(uri, experiment_id, local_ui)
    if is_server(uri) or answers(local_ui):
        return f"\nBrowse the runs: open {address}"
    return f"\nBrowse the runs: {address}\n  start the UI first: {start_command(uri, default_uri)}"


def answers(base: str, timeout_s: float = UI_PROBE_S) -> bool:
    """Whether an MLflow UI answers at `base` (its /health says OK) within `timeout_s`: a short look,
    never through a proxy, that cannot hold up the end of a sweep."""
    import http.client
    from urllib.parse import urlsplit

    # One request to that address, no redirect followed (it could lead anywhere, and hold up the end).
    try:
        address = urlsplit(base)
        kind = http.client.HTTPSConnection if address.scheme == "https" else http.client.HTTPConnection
        connection = kind(address.hostname, address.port, timeout=timeout_s)
        try:
            connection.request("GET", f"{address.path.rstrip('/')}/health")
            response = connection.getresponse()
            return response.status == 200 and response.read(16).strip() == b"OK"
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException):  # refused, timed out, not HTTP, a bad address
        return False


def main(argv: list[str] | None = None, prog: str = "python -m sweeplab.tracking.ui") -> int:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Print the MLflow store `sweeplab ui` opens and the runs-table address of each of its experiments.",
    )
    add_tracking_uri_argument(p, "the store to list")
    p.add_argument("--local-ui", default=LOCAL_UI, help=f"where the UI over a local store listens (default {LOCAL_UI})")
    args = p.parse_args(argv)
    print_store(resolve_uri(args.tracking_uri), args.local_ui)
    return 0


@command_boundary()
def serve_main(argv: list[str] | None = None, prog: str = "sweeplab ui") -> int:
    """`sweeplab ui`: the store and its experiments' addresses, then MLflow's UI over it (this
    process becomes `mlflow ui`); a tracking server has its own UI, so nothing is started for one."""
    p = argparse.ArgumentParser(prog=prog, description="Browse a store's runs in MLflow's UI; Ctrl-C stops it.")
    add_tracking_uri_argument(p, "the store to browse")
    p.add_argument("--host", default=HOST, help=f"address to bind (default {HOST}: this machine only)")
    p.add_argument("--port", type=int, default=PORT, help=f"(default {PORT})")
    args = p.parse_args(argv)
    uri = resolve_uri(args.tracking_uri)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    print_store(uri, f"http://{args.host}:{args.port}")
    if is_server(uri):
        return 0
    sys.stdout.flush()
    from sweeplab.tracking.server import mlflow_env

    os.execve(sys.executable, mlflow_ui_command(args.host, args.port), mlflow_env(uri))


def mlflow_ui_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port), "--workers", "2"]


def print_store(uri: str, local_ui: str) -> None:
    """The store, and the runs-table address of each of its experiments."""
    if is_server(uri):
        print(f"MLflow tracking server {display_uri(uri)}: it serves its own UI, nothing to start.")
    else:
        print(f"MLflow store: {display_uri(uri)}, UI at {local_ui}")
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        print("  no experiments yet (no sweep has logged to it)")
        return
    for experiment in _experiments(uri):
        print(f"  {experiment.name}: {runs_address(uri, experiment.experiment_id, local_ui)}")


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
