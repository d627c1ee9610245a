"""Several machines, as several machines: network namespaces with addresses of
their own on one bridge. The tracking server (basic auth, PostgreSQL behind it)
runs on the bridge's host side, the chief in one namespace with its oracle on
that namespace's address (a shared token, TLS), two agents in two more."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest
from certs import self_signed
from conftest import unavailable
from mlflow import MlflowClient
from processes import Process, until
from stores import sqlite_uri

pytestmark = pytest.mark.slow

TOKEN, PASSWORD = "shared-oracle-token", "team-secret-2"
LOGIN = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORD, "SWEEPLAB_ORACLE_TOKEN": TOKEN}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def hosts():
    """{name: address} of a server side (the host) and three namespaces: chief, agent0, agent1."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        unavailable("network namespaces need iproute2's `ip` and root")
    tag = uuid.uuid4().hex[:5]
    subnet = f"10.{77 + int(tag[:2], 16) % 100}.{int(tag[2:4], 16)}"
    bridge = f"swb{tag}"
    names = {"chief": 2, "agent0": 3, "agent1": 4}
    made: list[str] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for name, last in names.items():
            ns, outside, inside = f"sw{tag}{name}", f"sw{tag}o{last}", f"sw{tag}i{last}"
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", ns)
            _ip("link", "set", outside, "master", bridge, "up")
            _ip("-n", ns, "addr", "add", f"{subnet}.{last}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as err:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        unavailable(f"cannot make network namespaces here: {err.stderr.decode().strip()}")
    yield {
        "server": f"{subnet}.1",
        **{n: f"{subnet}.{last}" for n, last in names.items()},
        **{f"ns:{n}": f"sw{tag}{n}" for n in names},
    }
    for ns in made:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def in_namespace(hosts: dict, name: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", hosts[f"ns:{name}"], *command]


def start_server(hosts: dict, tmp_path, processes: list, postgres) -> str:
    """The tracking server on the bridge's host side (basic auth, PostgreSQL behind it); its URI."""
    from conftest import free_port

    port = free_port()
    server = Process(
        [sys.executable, "-m", "sweeplab.tracking.server", "--host", hosts["server"], "--port", str(port)],
        tmp_path,
        tmp_path / "server.log",
        extra_env={
            "DB_URI": f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres.migrated_name()}",
            "ARTIFACTS": str(tmp_path / "artifacts"),
            "SWEEPLAB_ADMIN_PASSWORD": PASSWORD,
        },
    )
    processes.append(server)
    until(lambda: "MLflow tracking server ready" in server.output(), 120, "the server", server)
    return f"http://{hosts['server']}:{port}"


def start_chief(hosts: dict, tmp_path, processes: list, uri: str) -> Process:
    """The search in the chief's namespace, its oracle on that namespace's address over TLS, no workers of its own."""
    (tmp_path / "chief").mkdir()
    cert, key = self_signed(tmp_path / "chief", hosts["chief"])  # names the address agents connect to
    chief = Process(
        in_namespace(
            hosts,
            "chief",
            sys.executable,
            "-m",
            "sweeplab",
            "tracking=server",
            f"tracking.uri={uri}",
            "tuner.workers=0",
            f"tuner.oracle.host={hosts['chief']}",
            f"tuner.oracle.tls_cert={cert}",
            f"tuner.oracle.tls_key={key}",
            # One trial at a time, a few seconds each; a lease that outlasts an agent's
            # wait, stopped, while the other starts.
            "tuner.max_trials=4",
            "tuner.pack=1",
            "trainer.epochs=4",
            "trainer.batch_size=8",
            "trainer.early_stopping.enabled=false",
            "trainer.verbose=0",
            "ensemble=none",
            "tuner.oracle.lease_s=300",
            "tuner.oracle.wait_s=60",
        ),
        tmp_path / "chief",
        tmp_path / "chief.log",
        extra_env=LOGIN,
    )
    processes.append(chief)
    return chief


def agent_starter(hosts: dict, tmp_path, processes: list, run_id: str, uri: str):
    """start(namespace name): an agent in that namespace joining the search `run_id`."""

    def start(name: str) -> Process:
        (tmp_path / name).mkdir()
        # No certificate given: the agent trusts the one the search logged on its run.
        agent = Process(
            in_namespace(hosts, name, sys.executable, "-m", "sweeplab.agent", run_id, "--tracking-uri", uri),
            tmp_path / name,
            tmp_path / f"{name}.log",
            extra_env=LOGIN,
        )
        processes.append(agent)
        return agent

    return start


def test_a_search_served_from_one_host_is_trained_by_agents_on_two_others(
    hosts, tmp_path, processes, postgres, monkeypatch
):
    from test_agents import start_two_agents_that_both_train

    uri = start_server(hosts, tmp_path, processes, postgres)
    chief = start_chief(hosts, tmp_path, processes, uri)
    found = until(
        lambda: re.search(r"python -m sweeplab\.agent (\w+) --tracking-uri (\S+)", chief.output()),
        120,
        "the agent command",
        chief,
    )
    run_id = found.group(1)
    assert "oracle calls use TLS" in chief.output()
    for key, value in LOGIN.items():
        if key.startswith("MLFLOW_"):
            monkeypatch.setenv(key, value)
    client = MlflowClient(uri)
    experiment_id = client.get_run(run_id).info.experiment_id

    agents = start_two_agents_that_both_train(
        agent_starter(hosts, tmp_path, processes, run_id, uri),
        lambda: client.search_runs([experiment_id], "tags.`sweeplab.role` = 'trial' and attributes.status = 'RUNNING'"),
        chief,
    )
    assert chief.wait(300) == 0, chief.output()[-3000:]
    for agent in agents:
        assert agent.wait(60) == 0, agent.output()[-3000:]
    search = client.get_run(run_id)
    assert search.data.tags["sweeplab.oracle"].startswith(f"{hosts['chief']}:")
    trials = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'trial'")
    finished = [t for t in trials if t.info.status == "FINISHED"]
    assert sorted(t.data.tags["sweeplab.trial_id"] for t in finished) == ["0", "1", "2", "3"]
    # Each namespace is its own host to the agents' processes, but they share this machine's name: the tag
    # tells them apart by tuner id. Each agent trained some.
    trained = {t.data.tags["sweeplab.worker"].partition("@")[0] for t in finished}
    ids = {re.search(r"this agent asks for trials as (agent-[0-9a-f]{6})", a.output()).group(1) for a in agents}
    assert trained == ids and len(ids) == 2, (trained, ids)
    assert all("(TLS)" in a.output() for a in agents)


def test_an_oracle_off_loopback_without_tls_says_it_is_in_clear(hosts, tmp_path, processes):
    uri = sqlite_uri(tmp_path / "mlruns")
    chief = Process(
        in_namespace(
            hosts,
            "chief",
            sys.executable,
            "-m",
            "sweeplab",
            f"tracking.uri={uri}",
            "tuner.workers=0",
            f"tuner.oracle.host={hosts['chief']}",
            "ensemble=none",
        ),
        tmp_path,
        tmp_path / "chief.log",
        extra_env={"SWEEPLAB_ORACLE_TOKEN": TOKEN},
    )
    processes.append(chief)
    until(lambda: "agents join from any machine" in chief.output(), 120, "the agent command", chief)
    assert (
        f"WARNING: the oracle at {hosts['chief']}:" in chief.output()
        and "the oracle token and every trial cross the network in clear" in chief.output()
    )
