"""`make server`'s security and start-up: the login store out of every user's reach, what a caller
reaches with no login, as a user who is not admin and as the admin, any admin password and a new one
at restart, TLS, and bad input (DB_URI, a taken port) stopped before anything is created. Real servers
on 127.0.0.1, the machine's PostgreSQL."""

from __future__ import annotations

import datetime
import http.client
import http.server
import ipaddress
import json
import os
import re
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import free_port
from logins import call, command_lines
from mlflow import MlflowClient
from processes import Process, env, until

# ConfigParser interpolation (%), the shell ($), quotes and spaces: every character must work.
PASSWORD = "p%w $HOME 'single' \"double\" 50%(x)s"
NEW_PASSWORD = 'a new one, 100% "fresh"'
MEMBER = ("alice", "alice-password-1")


def start(
    tmp_path: Path,
    processes: list,
    db: str,
    *args: str,
    port: int | None = None,
    extra_env: dict | None = None,
    log: str = "server.log",
) -> tuple[Process, str]:
    """A server (cwd tmp_path, so its state is tmp_path/mlruns/server-state) and the tracking URI it printed."""
    command = [sys.executable, "-m", "sweeplab.tracking.server", "--port", str(port or free_port()), *args]
    server = Process(
        command,
        tmp_path,
        tmp_path / log,
        extra_env={"DB_URI": db, "ARTIFACTS": str(tmp_path / "server-artifacts"), **(extra_env or {})},
    )
    processes.append(server)
    found = until(
        lambda: re.search(r"ready\n  tracking URI: (\S+)", server.output()), 300, "the server to be ready", server
    )
    return server, found.group(1)


def stop(server: Process) -> None:
    os.killpg(server.proc.pid, signal.SIGINT)
    assert server.wait(30) == 0


def promoted(login_store: Path, username: str, copy: Path) -> bytes:
    """A copy of the login store in which `username` is admin: what an attacker would upload."""
    shutil.copy(login_store, copy)
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE users SET is_admin = 1 WHERE username = ?", (username,))
    return copy.read_bytes()


def reaches(uri: str, login, requests) -> dict:
    """{(method, path): status} for requests given as (method, path[, body bytes])."""
    return {
        (method, path): call(uri, method, path, login, data=body[0] if body else None)[0]
        for method, path, *body in requests
    }


def admin_creates_a_member_and_a_secret(uri: str, admin: tuple) -> tuple[str, str, str]:
    """As admin: the member, an experiment of the admin's, a run in it and an artifact; (experiment, run, its path)."""
    assert (
        call(uri, "POST", "/api/2.0/mlflow/users/create", admin, json={"username": MEMBER[0], "password": MEMBER[1]})[0]
        == 200
    )
    experiment = json.loads(
        call(uri, "POST", "/api/2.0/mlflow/experiments/create", admin, json={"name": "admins-only"})[1]
    )["experiment_id"]
    run = json.loads(call(uri, "POST", "/api/2.0/mlflow/runs/create", admin, json={"experiment_id": experiment})[1])[
        "run"
    ]["info"]["run_id"]
    secret = f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/secret.txt"
    assert call(uri, "PUT", secret, admin, data=b"the admin's")[0] == 200
    return experiment, run, secret


def restart_with_a_new_admin_password(server: Process, tmp_path: Path, processes: list, db: str, uri: str) -> None:
    """A new admin password takes effect at the next start; the member is still no admin."""
    port = int(uri.rsplit(":", 1)[1])
    stop(server)
    again, _ = start(
        tmp_path,
        processes,
        db,
        "--auth",
        port=port,
        log="again.log",
        extra_env={"SWEEPLAB_ADMIN_PASSWORD": NEW_PASSWORD},
    )
    assert "admin password of 'admin' was updated" in again.output() and NEW_PASSWORD not in again.output()
    assert call(uri, "GET", "/api/2.0/mlflow/users/get?username=admin", ("admin", PASSWORD))[0] == 401
    status, body = call(uri, "GET", f"/api/2.0/mlflow/users/get?username={MEMBER[0]}", ("admin", NEW_PASSWORD))
    assert status == 200 and json.loads(body)["user"]["is_admin"] is False


@pytest.mark.slow
def test_a_member_reaches_only_its_experiments_never_the_login_store(tmp_path, processes, postgres):
    db = f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres.migrated_name()}"
    server, uri = start(tmp_path, processes, db, "--auth", extra_env={"SWEEPLAB_ADMIN_PASSWORD": PASSWORD})
    admin = ("admin", PASSWORD)
    # Any character logs in, and the password shows in no output and no command line of the server's processes.
    assert call(uri, "GET", "/api/2.0/mlflow/users/get?username=admin", admin)[0] == 200
    assert PASSWORD not in server.output() and "%(x)s" not in server.output()
    assert not [line for line in command_lines(server.proc.pid) if "50%" in line or "HOME '" in line]
    assert "in clear text" in server.output()

    experiment, run, secret = admin_creates_a_member_and_a_secret(uri, admin)

    login_store = tmp_path / "mlruns" / "server-state" / "basic_auth.db"
    assert login_store.stat().st_size and (login_store.parent.stat().st_mode & 0o777) == 0o700
    before = login_store.read_bytes()
    tampered = promoted(login_store, MEMBER[0], tmp_path / "tampered.db")
    root = "/api/2.0/mlflow-artifacts/artifacts"
    elsewhere = [
        ("GET", f"{root}?path="),
        ("GET", "/ajax-api/2.0/mlflow-artifacts/artifacts?path="),
        ("GET", f"{root}/basic_auth.db"),
        ("PUT", f"{root}/basic_auth.db", tampered),
        ("GET", f"{root}?path={experiment}"),
        ("GET", secret),
        ("PUT", secret, b"overwritten"),
        ("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={experiment}"),
        ("GET", f"/ajax-api/2.0/mlflow/experiments/get?experiment_id={experiment}"),
        ("GET", f"/get-artifact?path=secret.txt&run_uuid={run}"),
        ("GET", "/api/2.0/mlflow/users/get?username=admin"),
    ]
    assert set(reaches(uri, MEMBER, elsewhere).values()) <= {403, 404}
    anywhere = [*elsewhere, ("GET", "/"), ("GET", "/ajax-api/2.0/mlflow/experiments/search?max_results=10")]
    assert set(reaches(uri, None, anywhere).values()) == {401}
    assert b"basic_auth.db" not in call(uri, "GET", f"{root}?path=", MEMBER)[1]
    assert json.loads(call(uri, "GET", "/api/2.0/mlflow/experiments/search?max_results=10", MEMBER)[1]) == {}
    assert call(uri, "GET", secret, admin) == (200, b"the admin's")
    assert login_store.read_bytes() == before and not (tmp_path / "server-artifacts" / "basic_auth.db").exists()
    # Sharing is the admin's grant (README): READ lets the member read, not write.
    grant = {"username": MEMBER[0], "resource_type": "experiment", "resource_id": experiment, "permission": "READ"}
    assert call(uri, "POST", "/api/3.0/mlflow/users/permissions/grant", admin, json=grant)[0] == 200
    assert call(uri, "GET", secret, MEMBER) == (200, b"the admin's")
    assert call(uri, "PUT", secret, MEMBER, data=b"overwritten")[0] == 403
    # The server remembers a login it checked (auth_cache_ttl_seconds), never one it refused.
    for wrong in [(MEMBER[0], MEMBER[1] + "x"), (MEMBER[0], MEMBER[1][:-1]), ("admin", MEMBER[1])]:
        assert call(uri, "GET", secret, wrong)[0] == 401

    restart_with_a_new_admin_password(server, tmp_path, processes, db, uri)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.slow
def test_with_tls_the_server_answers_https_only(tmp_path, processes, postgres, monkeypatch):
    cert, key = self_signed(tmp_path)
    db = f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres.migrated_name()}"
    server, uri = start(
        tmp_path,
        processes,
        db,
        "--auth",
        extra_env={"SWEEPLAB_ADMIN_PASSWORD": PASSWORD, "TLS_CERT": str(cert), "TLS_KEY": str(key)},
    )
    assert uri.startswith("https://127.0.0.1:") and "clear text" not in server.output()
    trusting = ssl.create_default_context(cafile=str(cert))
    assert call(uri, "GET", "/api/2.0/mlflow/users/get?username=admin", ("admin", PASSWORD), context=trusting)[0] == 200
    assert call(uri, "GET", "/api/2.0/mlflow/users/get?username=admin", context=trusting)[0] == 401
    with pytest.raises((OSError, http.client.HTTPException)):
        call(uri.replace("https://", "http://"), "GET", "/health")
    # MLflow's own client, trusting the certificate, logs in and writes through the artifact proxy.
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("over-tls")).info.run_id
    (tmp_path / "note.txt").write_text("encrypted on the way")
    client.log_artifact(run, str(tmp_path / "note.txt"))
    assert [a.path for a in client.list_artifacts(run)] == ["note.txt"]


def run_server(tmp_path: Path, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweeplab.tracking.server", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        env={**env(), **(extra_env or {})},
    )


def assert_refused(result: subprocess.CompletedProcess, key: str, tmp_path: Path) -> None:
    """Exit 2, one line naming `key`, no traceback, no server, nothing created."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and key in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "ready" not in result.stdout
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "server-artifacts").exists()


@pytest.mark.parametrize(
    "db_uri",
    [
        "postgresql+psycopg://postgres@127.0.0.1:5432",  # no database name
        "postgresql+psycopg://postgres@127.0.0.1:5432/",
        "postgresql+psycopg://postgres:secret@127.0.0.1:port/sweeplab",  # not a port
        "postgres db on this machine",
    ],
)
def test_a_db_uri_without_a_database_name_is_refused_before_anything_is_created(tmp_path, postgres, db_uri):
    assert not postgres.exists("None")
    postgres.names.append("None")  # dropped afterwards, should a regression create it
    # Should the check regress, libpq's default database (PGDATABASE) must not be the shared `postgres`.
    result = run_server(
        tmp_path,
        "--port",
        str(free_port()),
        extra_env={
            "DB_URI": db_uri,
            "ARTIFACTS": str(tmp_path / "server-artifacts"),
            "PGDATABASE": postgres.new_name(),
        },
    )
    assert_refused(result, "DB_URI", tmp_path)
    assert "secret" not in result.stderr
    assert not postgres.exists("None")


def test_a_taken_port_is_refused_not_reported_ready(tmp_path, postgres):
    """Another server answering /health there (`make ui`, say) must not pass for this one."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    name = postgres.new_name()
    try:
        result = run_server(
            tmp_path,
            "--port",
            str(other.server_address[1]),
            extra_env={
                "DB_URI": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                "ARTIFACTS": str(tmp_path / "server-artifacts"),
            },
        )
    finally:
        other.shutdown()
        other.server_close()
    assert_refused(result, f"PORT={other.server_address[1]}", tmp_path)
    assert not postgres.exists(name)


@pytest.mark.parametrize(
    "extra_env, key",
    [
        ({"TLS_CERT": "server.crt"}, "TLS_CERT"),
        ({"TLS_CERT": "missing.crt", "TLS_KEY": "missing.key"}, "TLS_CERT"),
        ({"SERVER_STATE": "server-artifacts/state"}, "SERVER_STATE"),
        ({"SWEEPLAB_ADMIN_PASSWORD": "too short"}, "SWEEPLAB_ADMIN_PASSWORD"),
    ],
)
def test_other_bad_settings_are_refused_before_anything_is_created(tmp_path, postgres, extra_env, key):
    name = postgres.new_name()
    result = run_server(
        tmp_path,
        "--auth",
        "--port",
        str(free_port()),
        extra_env={
            "SWEEPLAB_ADMIN_PASSWORD": PASSWORD,
            "DB_URI": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            "ARTIFACTS": str(tmp_path / "server-artifacts"),
            **extra_env,
        },
    )
    assert_refused(result, key, tmp_path)
    assert not postgres.exists(name)


def test_a_login_store_left_in_artifacts_by_an_earlier_release_moves_out_of_reach(tmp_path, capsys):
    from sweeplab.tracking.server import login_store

    artifacts = tmp_path / "server-artifacts"
    artifacts.mkdir()
    (artifacts / "basic_auth.db").write_bytes(b"the users")
    store = login_store(tmp_path / "state", str(artifacts))
    assert store == tmp_path / "state" / "basic_auth.db" and store.read_bytes() == b"the users"
    assert not (artifacts / "basic_auth.db").exists() and (store.parent.stat().st_mode & 0o777) == 0o700
    assert "change every user's password" in capsys.readouterr().out
    # A second copy (the store exists already; ARTIFACTS as a file: URI) is moved out too, not left served.
    (artifacts / "basic_auth.db").write_bytes(b"an old copy")
    assert login_store(tmp_path / "state", artifacts.as_uri()) == store and store.read_bytes() == b"the users"
    assert not (artifacts / "basic_auth.db").exists()
    assert [p.read_bytes() for p in store.parent.glob("basic_auth.db.old-*")] == [b"an old copy"]


def test_a_state_folder_of_another_user_is_refused(tmp_path):
    from sweeplab.errors import TrackingError
    from sweeplab.tracking.server import check_state_dir, login_store

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    os.chown(shared, 65534, 65534)  # nobody's, as /tmp is root's for a user
    with pytest.raises(TrackingError, match="SERVER_STATE: .* belongs to another user"):
        login_store(shared, str(tmp_path / "artifacts"))
    assert (shared.stat().st_mode & 0o7777) == 0o1777  # its mode untouched
    with pytest.raises(TrackingError, match="inside ARTIFACTS"):
        check_state_dir(tmp_path / "artifacts" / "state", (tmp_path / "artifacts").as_uri())
