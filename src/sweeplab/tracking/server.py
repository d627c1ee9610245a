"""`make server`: a team's MLflow tracking server, on PostgreSQL, with proxied artifacts.

    sweeplab server [--host H] [--port P] [--auth] [--tls-cert C --tls-key K]   (or python -m sweeplab.tracking.server)

The backend store is DB_URI (default postgresql+psycopg://postgres@127.0.0.1:5432/sweeplab):
the database is created when missing and brought to MLflow's schema with MLflow's
own migrations (`mlflow db upgrade`). Artifacts go through the server to
ARTIFACTS (any URI MLflow accepts), so clients need only the server's address.
Binding anything but loopback needs MLflow's basic-auth app, whose admin password
comes from SWEEPLAB_ADMIN_PASSWORD or the file named by SWEEPLAB_ADMIN_PASSWORD_FILE,
never from the command line; its login store lives in SERVER_STATE, a folder of
this user's that nothing serves. TLS_CERT and TLS_KEY make it answer https only.
Prints the tracking URI and the UI's address when ready; Ctrl-C stops the server
and everything it started.
"""

from __future__ import annotations

import argparse
import errno
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

from sweeplab.errors import TrackingError, command_boundary, one_line, short_reason
from sweeplab.tracking.store import redact

DEFAULT_DB_URI = "postgresql+psycopg://postgres@127.0.0.1:5432/sweeplab"
ENV_PASSWORD, ENV_PASSWORD_FILE, ENV_USERNAME = (
    "SWEEPLAB_ADMIN_PASSWORD",
    "SWEEPLAB_ADMIN_PASSWORD_FILE",
    "SWEEPLAB_ADMIN_USERNAME",
)
MIN_PASSWORD = 12  # MLflow's own minimum: shorter ones fail its admin bootstrap
READY_TIMEOUT_S = 120
LOGIN_STORE = "basic_auth.db"
LOGIN_CACHE_S = 30


def parser(prog: str = "python -m sweeplab.tracking.server") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="A team's MLflow tracking server, on PostgreSQL, with proxied artifacts."
    )
    p.add_argument(
        "--db-uri",
        default=os.environ.get("DB_URI") or DEFAULT_DB_URI,
        help="backend store (default: $DB_URI, else %(default)s); pass it by environment if it holds a password",
    )
    p.add_argument(
        "--artifacts",
        default=os.environ.get("ARTIFACTS") or str(Path("mlruns") / "server-artifacts"),
        help="where proxied artifacts go: a folder or any artifact URI MLflow accepts (default: $ARTIFACTS, "
        "else mlruns/server-artifacts)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("SERVER_STATE") or Path("mlruns") / "server-state"),
        help="the server's private folder, mode 0700: its login store (default: $SERVER_STATE, else "
        "mlruns/server-state); never inside ARTIFACTS",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--auth", action="store_true", help="MLflow's basic auth even on loopback")
    p.add_argument(
        "--tls-cert",
        default=os.environ.get("TLS_CERT") or None,
        help="PEM certificate (chain): serve https only (default: $TLS_CERT)",
    )
    p.add_argument(
        "--tls-key", default=os.environ.get("TLS_KEY") or None, help="its PEM private key (default: $TLS_KEY)"
    )
    p.add_argument(
        "--allowed-hosts",
        default=os.environ.get("ALLOWED_HOSTS"),
        help="Host headers the server answers (MLflow's default: localhost and private addresses)",
    )
    return p


def admin_password() -> str | None:
    if os.environ.get(ENV_PASSWORD):
        source, password = ENV_PASSWORD, os.environ[ENV_PASSWORD]
    elif os.environ.get(ENV_PASSWORD_FILE):
        source, path = ENV_PASSWORD_FILE, Path(os.environ[ENV_PASSWORD_FILE])
        if not path.is_file():
            raise TrackingError(f"{ENV_PASSWORD_FILE}: no file {str(path)!r}")
        password = path.read_text().strip()
    else:
        return None
    if len(password) < MIN_PASSWORD:
        raise TrackingError(f"{source}: expected a password of at least {MIN_PASSWORD} characters, got {len(password)}")
    return password


def check_db_uri(db_uri: str) -> None:
    """DB_URI names a database: a malformed one or one without a name stops here, before anything is created."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    expected = "expected a URI like postgresql+psycopg://user@host:5432/<database>"
    try:
        url = make_url(db_uri)
        _ = url.port  # a port that is not a number fails only when read
    except (ArgumentError, ValueError):
        raise TrackingError(f"DB_URI: {redact(db_uri)!r} is not a database URI; {expected}") from None
    if not url.database:
        raise TrackingError(f"DB_URI: {redact(db_uri)!r} names no database; {expected}")


def check_tls(cert: str | None, key: str | None) -> tuple[Path, Path] | None:
    if not cert and not key:
        return None
    if not (cert and key):
        raise TrackingError("TLS_CERT, TLS_KEY: expected both (a PEM certificate and its key) or neither")
    for name, path in (("TLS_CERT", cert), ("TLS_KEY", key)):
        if not Path(path).is_file():
            raise TrackingError(f"{name}: no file {path!r}")
    return Path(cert).resolve(), Path(key).resolve()


def check_port(host: str, port: int) -> None:
    """Another server on the port (`make ui`...) would answer our ready probe: refuse to start instead."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise TrackingError(f"HOST={host}: not an address of this machine ({err.strerror})") from None
    try:
        # SO_REUSEADDR as uvicorn sets it: a port a stopped server left in TIME_WAIT is free.
        with socket.create_server((host, port), family=family):
            pass
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise TrackingError(
                f"PORT={port}: {host}:{port} is already in use: stop what listens there "
                "(`make ui`?) or pick another PORT"
            ) from None
        raise TrackingError(f"HOST={host} PORT={port}: cannot listen there ({os.strerror(err.errno)})") from None


def check_state_dir(state: Path, artifacts: str) -> None:
    if "\n" in str(state) or "\r" in str(state):
        raise TrackingError(f"SERVER_STATE: expected a folder name without line breaks, got {str(state)!r}")
    folder = _local_folder(artifacts)
    if folder is not None and state.resolve().is_relative_to(folder.resolve()):
        raise TrackingError(
            f"SERVER_STATE: {str(state)!r} is inside ARTIFACTS ({artifacts}), which the server "
            "serves; expected a folder outside it"
        )


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
            f"DB_URI: cannot reach PostgreSQL at {url.render_as_string(hide_password=True)}: {short_reason(str(err))}"
        ) from None


def migrate(db_uri: str) -> None:
    """MLflow's own migrations (its `mlflow db upgrade`, run here so the URI stays off the command line):
    an empty database gets the schema, an older one is upgraded."""
    from click.exceptions import ClickException
    from mlflow.db import upgrade

    try:
        upgrade.main([db_uri], standalone_mode=False)
    except (ClickException, Exception) as err:
        raise TrackingError(f"DB_URI: MLflow's migration failed: {one_line(str(err))}") from None


def login_store(state: Path, artifacts: str) -> Path:
    """The login store, in a folder only this user may enter. A file, not a database beside DB_URI: it
    needs no PostgreSQL rights and works with any DB_URI; the folder is never served."""
    state.mkdir(parents=True, exist_ok=True)
    if state.stat().st_uid != os.getuid():
        raise TrackingError(
            f"SERVER_STATE: {str(state)!r} belongs to another user; expected a folder of this "
            "user's, for the server's login store"
        )
    state.chmod(0o700)
    store = state / LOGIN_STORE
    # Earlier releases kept it in ARTIFACTS (where every user could download it), or mlruns/.
    old = (_local_folder(artifacts) or Path("mlruns")) / LOGIN_STORE
    if old.is_file():
        # Never left where the server serves it: the current store, or a copy kept beside it.
        moved = store if not store.exists() else state / f"{LOGIN_STORE}.old-{int(time.time())}"
        shutil.move(old, moved)
        print(
            f"[sweeplab] moved a login store out of the served folder: {old} -> {moved}. Earlier releases let "
            "every logged-in user download it: change every user's password",
            flush=True,
        )
    return store


def _local_folder(artifacts: str) -> Path | None:
    """ARTIFACTS as a folder of this machine (a path or a file: URI), else None."""
    if "://" not in artifacts:
        return Path(artifacts)
    if artifacts.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(artifacts).path))
    return None


def set_admin_password(store: Path, username: str, password: str) -> bool:
    """MLflow sets the admin's password only when it creates the user: a changed one is written here. True
    when it changed."""
    if not store.exists():
        return False
    with warnings.catch_warnings():  # the auth package imports MLflow's server, which warns about Starlette
        warnings.simplefilter("ignore", DeprecationWarning)
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    users = SqlAlchemyStore()
    users.init_db(f"sqlite:///{store}")
    try:
        if not users.has_user(username) or users.authenticate_user(username, password):
            return False
        users.update_user(username, password=password)
        return True
    finally:
        users.engine.dispose()


def auth_config(folder: Path, store: Path) -> Path:
    """MLflow's basic-auth settings, readable by this user only. The admin's name and password go by
    environment (MLFLOW_AUTH_ADMIN_*): ConfigParser would read a `%` in them as interpolation."""
    path = folder / "basic_auth.ini"
    path.write_text(
        "[mlflow]\n"
        # A non-admin reaches only the experiments it created (MLflow gives their creator MANAGE) or was
        # granted: nothing of the artifact proxy's root, nor other users' experiments.
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{str(store.resolve()).replace('%', '%%')}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A login's scrypt check costs about 0.1 s of CPU; without a cache every request of every agent pays it.
        # A password changed or a user deleted through the API stays valid in the other workers until it expires.
        f"auth_cache_ttl_seconds = {LOGIN_CACHE_S}\n"
    )
    path.chmod(0o600)
    return path


@command_boundary()
def main(argv: list[str] | None = None, prog: str = "python -m sweeplab.tracking.server") -> int:
    from sweeplab.net import is_loopback

    args = parser(prog).parse_args(argv)
    password = admin_password()
    use_auth = args.auth or not is_loopback(args.host)
    if use_auth and not password:
        raise TrackingError(
            f"HOST={args.host}: a server reachable from other machines needs a login. Set the admin password "
            f"in {ENV_PASSWORD} (or a file named by {ENV_PASSWORD_FILE}), e.g. "
            f"`{ENV_PASSWORD}=... make server HOST={args.host}`; clients then set MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD"
        )
    check_db_uri(args.db_uri)
    tls = check_tls(args.tls_cert, args.tls_key)
    check_state_dir(args.state_dir, args.artifacts)
    check_port(args.host, args.port)
    env = mlflow_env(args.db_uri)
    if create_database(args.db_uri):
        print(f"[sweeplab] created database {redact(args.db_uri)}", flush=True)
    migrate(args.db_uri)
    if "://" not in args.artifacts:
        Path(args.artifacts).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sweeplab-server-") as private:
        command = server_command(args, tls)
        if use_auth:
            command += with_auth(env, Path(private), login_store(args.state_dir, args.artifacts), password)
        return serve(command, env, args.host, args.port, use_auth, tls is not None)


def mlflow_env(store_uri: str) -> dict:
    """The environment of an MLflow server or UI over `store_uri`: a clean stop on Ctrl-C (no
    job-runner processes), the store's URI by environment (a password never shows in `ps`), and
    this environment's tools (uvicorn) on PATH, from where MLflow starts them."""
    return {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_BACKEND_STORE_URI": store_uri,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def server_command(args: argparse.Namespace, tls: tuple[Path, Path] | None) -> list[str]:
    command = [
        _tool("mlflow"),
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        args.artifacts,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        "2",
    ]
    if args.allowed_hosts:
        command += ["--allowed-hosts", args.allowed_hosts]
    if tls:
        # MLflow runs uvicorn (basic-auth included): its own TLS, https only on this port.
        command += [
            "--uvicorn-opts",
            f"--ssl-certfile {shlex.quote(str(tls[0]))} --ssl-keyfile {shlex.quote(str(tls[1]))}",
        ]
    return command


def with_auth(env: dict, private: Path, store: Path, password: str) -> list[str]:
    """The basic-auth app's settings into `env`; its command-line options."""
    username = os.environ.get(ENV_USERNAME, "admin")
    if set_admin_password(store, username, password):
        print(f"[sweeplab] the admin password of '{username}' was updated", flush=True)
    env.update(
        {
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_config(private, store)),
            "MLFLOW_AUTH_ADMIN_USERNAME": username,
            "MLFLOW_AUTH_ADMIN_PASSWORD": password,
            # Routes without a permission check of their own are refused (MLflow's default; never inherited off).
            "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true",
        }
    )
    # The login form's CSRF protection signs with it; one secret for all of this server's workers.
    env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
    return ["--app-name", "basic-auth"]


def serve(command: list[str], env: dict, host: str, port: int, auth: bool, tls: bool) -> int:
    """Run the server in a process group of its own until it exits or Ctrl-C stops it."""
    server = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Ctrl-C even when started with SIGINT ignored (a background job, nohup); a `kill` stops it the same way.
    for sig in previous:
        signal.signal(sig, signal.default_int_handler)
    try:
        address = f"{'https' if tls else 'http'}://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        _wait_ready(server, address)
        print(
            f"\n[sweeplab] MLflow tracking server ready\n  tracking URI: {address}   "
            f"(python -m sweeplab tracking=server tracking.uri={address})\n  UI: {address}/"
            + ("\n  login: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (basic auth)" if auth else "")
            + (
                "\n  warning: no TLS: logins and data cross the network in clear text (set TLS_CERT and TLS_KEY)"
                if auth and not tls
                else ""
            )
            + "\n  Ctrl-C stops it.",
            flush=True,
        )
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


def _wait_ready(server: subprocess.Popen, address: str) -> None:
    probe = f"{address}/health"
    # Our own child on a port we found free: liveness only, whatever name the certificate is for.
    context = None
    if probe.startswith("https"):
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise TrackingError(f"mlflow server exited with {server.returncode} (its output is above)")
        try:
            with urllib.request.urlopen(probe, timeout=2, context=context):
                return
        except OSError:
            time.sleep(0.5)
    raise TrackingError(f"mlflow server did not answer {probe} within {READY_TIMEOUT_S} s")


def _tool(name: str) -> str:
    """A command of this environment (the venv's bin), whether or not it is on PATH."""
    return str(Path(sys.executable).with_name(name))


if __name__ == "__main__":
    sys.exit(main())
