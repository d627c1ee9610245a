"""`make server`: a team's MLflow tracking server, on PostgreSQL, with proxied artifacts.

    python -m sweeplab.tracking.server [--host H] [--port P] [--auth]

The backend store is DB_URI (default postgresql+psycopg://postgres@127.0.0.1:5432/sweeplab):
the database is created when missing and brought to MLflow's schema with MLflow's
own migrations (`mlflow db upgrade`). Artifacts go through the server to
ARTIFACTS (any URI MLflow accepts), so clients need only the server's address.
Binding anything but loopback needs MLflow's basic-auth app, whose admin password
comes from SWEEPLAB_ADMIN_PASSWORD or the file named by SWEEPLAB_ADMIN_PASSWORD_FILE,
never from the command line. Prints the tracking URI and the UI's address when
ready; Ctrl-C stops the server and everything it started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sweeplab.errors import TrackingError, short_reason
from sweeplab.tracking.store import redact

DEFAULT_DB_URI = "postgresql+psycopg://postgres@127.0.0.1:5432/sweeplab"
ENV_PASSWORD, ENV_PASSWORD_FILE, ENV_USERNAME = (
    "SWEEPLAB_ADMIN_PASSWORD", "SWEEPLAB_ADMIN_PASSWORD_FILE", "SWEEPLAB_ADMIN_USERNAME",
)
READY_TIMEOUT_S = 120


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweeplab.tracking.server", description=__doc__.splitlines()[0])
    p.add_argument("--db-uri", default=os.environ.get("DB_URI") or DEFAULT_DB_URI,
                   help="backend store (default: $DB_URI, else %(default)s); pass it by environment if it holds a "
                        "password")
    p.add_argument("--artifacts", default=os.environ.get("ARTIFACTS") or str(Path("mlruns") / "server-artifacts"),
                   help="where proxied artifacts go: a folder or any artifact URI MLflow accepts (default: $ARTIFACTS, "
                        "else mlruns/server-artifacts)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--auth", action="store_true", help="MLflow's basic auth even on loopback")
    p.add_argument("--allowed-hosts", default=os.environ.get("ALLOWED_HOSTS"),
                   help="Host headers the server answers (MLflow's default: localhost and private addresses)")
    return p


def admin_password() -> str | None:
    if os.environ.get(ENV_PASSWORD):
        return os.environ[ENV_PASSWORD]
    if os.environ.get(ENV_PASSWORD_FILE):
        path = Path(os.environ[ENV_PASSWORD_FILE])
        if not path.is_file():
            raise TrackingError(f"{ENV_PASSWORD_FILE}: no file {str(path)!r}")
        return path.read_text().strip()
    return None


def create_database(db_uri: str) -> bool:
    """Create the PostgreSQL database of `db_uri` when it is missing; True if it was created."""
    from sqlalchemy.engine import make_url

    url = make_url(db_uri)
    if not url.drivername.startswith("postgresql"):
        return False
    import psycopg

    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
            if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone():
                return False
            connection.execute(f'CREATE DATABASE "{url.database}"')
            return True
    except psycopg.Error as err:
        raise TrackingError(
            f"DB_URI: cannot reach PostgreSQL at {url.render_as_string(hide_password=True)}: "
            f"{short_reason(str(err))}"
        ) from None


def migrate(db_uri: str) -> None:
    """MLflow's own migrations (its `mlflow db upgrade`, run here so the URI stays off the command line):
    an empty database gets the schema, an older one is upgraded."""
    from click.exceptions import ClickException

    from mlflow.db import upgrade

    try:
        upgrade.main([db_uri], standalone_mode=False)
    except (ClickException, Exception) as err:
        raise TrackingError(f"DB_URI: MLflow's migration failed: {short_reason(redact(str(err)))}") from None


def auth_config(folder: Path, password: str, store_dir: Path) -> Path:
    """MLflow's basic-auth settings, readable by this user only."""
    path = folder / "basic_auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = EDIT\n"
        f"database_uri = sqlite:///{store_dir.resolve() / 'basic_auth.db'}\n"
        f"admin_username = {os.environ.get(ENV_USERNAME, 'admin')}\n"
        f"admin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    path.chmod(0o600)
    return path


def main(argv: list[str] | None = None) -> int:
    from sweeplab.net import is_loopback

    args = parser().parse_args(argv)
    try:
        password = admin_password()
        use_auth = args.auth or not is_loopback(args.host)
        if use_auth and not password:
            raise TrackingError(
                f"HOST={args.host}: a server reachable from other machines needs a login. Set the admin password "
                f"in {ENV_PASSWORD} (or a file named by {ENV_PASSWORD_FILE}), e.g. "
                f"`{ENV_PASSWORD}=... make server HOST={args.host}`; clients then set MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD"
            )
        # A clean stop on Ctrl-C (no job-runner processes); the store's URI by environment, not on `ps`;
        # the venv's tools (uvicorn) on PATH.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_BACKEND_STORE_URI": args.db_uri,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        if create_database(args.db_uri):
            print(f"[sweeplab] created database {redact(args.db_uri)}", flush=True)
        migrate(args.db_uri)
        artifacts = args.artifacts
        if "://" not in artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sweeplab-server-") as private:
            command = [_tool("mlflow"), "server", "--serve-artifacts", "--artifacts-destination", artifacts,
                       "--host", args.host, "--port", str(args.port), "--workers", "2"]
            if args.allowed_hosts:
                command += ["--allowed-hosts", args.allowed_hosts]
            if use_auth:
                store_dir = Path(artifacts) if "://" not in artifacts else Path("mlruns")
                env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config(Path(private), password, store_dir))
                # The login form's CSRF protection signs with it; one secret for all of this server's workers.
                env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
                command += ["--app-name", "basic-auth"]
            return serve(command, env, args.host, args.port, use_auth)
    except TrackingError as err:
        print(f"sweeplab server: {err}", file=sys.stderr)
        return 2


def serve(command: list[str], env: dict, host: str, port: int, auth: bool) -> int:
    """Run the server in a process group of its own until it exits or Ctrl-C stops it."""
    server = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Ctrl-C even when started with SIGINT ignored (a background job, nohup); a `kill` stops it the same way.
    for sig in previous:
        signal.signal(sig, signal.default_int_handler)
    try:
        _wait_ready(server, host, port)
        address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        print(f"\n[sweeplab] MLflow tracking server ready\n  tracking URI: {address}   "
              f"(python -m sweeplab tracking=server tracking.uri={address})\n  UI: {address}/"
              + ("\n  login: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (basic auth)" if auth else "")
              + "\n  Ctrl-C stops it.", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def _die_with_parent() -> None:
    """In the server's process: stop when this command is killed outright (SIGKILL), too (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _wait_ready(server: subprocess.Popen, host: str, port: int) -> None:
    probe = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/health"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise TrackingError(f"mlflow server exited with {server.returncode} (its output is above)")
        try:
            with urllib.request.urlopen(probe, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TrackingError(f"mlflow server did not answer {probe} within {READY_TIMEOUT_S} s")


def _tool(name: str) -> str:
    """A command of this environment (the venv's bin), whether or not it is on PATH."""
    return str(Path(sys.executable).with_name(name))


if __name__ == "__main__":
    sys.exit(main())
