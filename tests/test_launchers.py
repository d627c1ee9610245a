"""Agents placed by a cluster engine (`tuner.launcher`): Ray actors on a real two-node Ray cluster
(the second node in a network namespace of its own, as tests/test_hosts.py does), one of them
killed mid-trial; a multirun on Ray (`hydra/launcher=ray`); SLURM job arrays through submitit's
local executor, and through a real one-node SLURM when Debian's slurm-wlm is installed."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import free_port, unavailable
from mlflow import MlflowClient
from processes import Process, env, until

from sweeplab.config.validation import validate
from sweeplab.errors import ConfigError, SweeplabError

TOKEN = "launcher-test-token"
TRIALS = 5
# Trials of a few seconds each, one at a time, so that an agent killed mid-trial is; a short
# lease hands its trial on within seconds.
FEW_SECOND_TRIALS = (
    f"tuner.max_trials={TRIALS}",
    "tuner.pack=1",
    "trainer.epochs=10",
    "trainer.batch_size=8",
    "trainer.steps_per_execution=1",
    "trainer.early_stopping.enabled=false",
    "trainer.verbose=0",
    "ensemble=none",
    "tuner.oracle.lease_s=15",
    "tuner.oracle.wait_s=8",
)
RAY_TAG = re.compile(r"ray:(\d+\.\d+\.\d+\.\d+):([0-9a-f]+)-[0-9a-f]{6}@")
BIN = Path(sys.executable).parent
# A cluster of this test's own on a private bridge: no usage reports, and no token of Ray's own
# (Ray 2.5x makes one per head; sweeplab's launcher joins a cluster with whatever Ray is configured to use).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _search(tmp_path: Path, *overrides: str, extra_env: dict | None = None) -> Process:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    args = [sys.executable, "-m", "sweeplab", f"tracking.uri={uri}", f"state_dir={tmp_path / 'state'}", *overrides]
    return Process(args, tmp_path, tmp_path / "search.log", extra_env=extra_env)


def _trials(tmp_path: Path, output: str) -> tuple[MlflowClient, str, list]:
    """(client, search run id, trial runs) of the search whose output is `output`."""
    run_id = re.search(r"\(MLflow run (\w+),", output).group(1)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment_id = client.get_run(run_id).info.experiment_id
    return client, run_id, client.search_runs([experiment_id], "tags.`sweeplab.role` = 'trial'")


def _one_finished_run_per_trial(trials: list, count: int, output: str = "") -> dict:
    """{trial id: its runs}, after checking that each of `count` trials has exactly one FINISHED run."""
    by_trial = defaultdict(list)
    for run in trials:
        by_trial[run.data.tags["sweeplab.trial_id"]].append(run)
    assert sorted(by_trial, key=int) == [str(i) for i in range(count)]
    for trial_id, runs in by_trial.items():
        statuses = [r.info.status for r in runs]
        assert statuses.count("FINISHED") == 1, f"trial {trial_id}: {statuses}\n{output[-6000:]}"
    return by_trial


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["tuner.launcher=ray", "tuner.workers=0"], "tuner.workers"),
        (["tuner.launcher=slurm", "tuner.workers=0"], "tuner.workers"),
        (["tuner.launcher=ray", "tuner.workers=2", "tuner.ray.num_gpus=-0.5"], "tuner.ray.num_gpus"),
        (["tuner.launcher=slurm", "tuner.workers=2", "tuner.slurm.time_min=0"], "tuner.slurm.time_min"),
        (["tuner.launcher=slurm", "tuner.workers=2", "tuner.slurm.executor=pbs"], "tuner.slurm.executor"),
        (["tuner.launcher=kubernetes", "tuner.workers=2"], "tuner.launcher"),
    ],
)
def test_a_launcher_set_wrong_is_refused_naming_the_key(make_config, overrides, key):
    with pytest.raises(ConfigError) as refused:
        validate(make_config(overrides))
    assert refused.value.key == key


def test_a_fraction_of_a_gpu_per_ray_agent_is_allowed(make_config):
    cfg = validate(make_config(["tuner.launcher=ray", "tuner.workers=4", "tuner.ray.num_gpus=0.25"]))
    assert (cfg.tuner.launcher.value, cfg.tuner.ray.num_gpus, cfg.tuner.ray.num_cpus) == ("ray", 0.25, 1.0)


def test_without_ray_installed_the_launcher_says_which_extra_to_install(make_config, monkeypatch, tmp_path):
    from sweeplab.search import launchers

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` finds without the extra: ImportError
    cfg = validate(make_config(["tuner.launcher=ray", "tuner.workers=2"]))
    placement = launchers.Placement(cfg, "run", tmp_path / "c.yaml", {}, tmp_path)
    with pytest.raises(SweeplabError, match=re.escape("tuner.launcher=ray needs ray: pip install -e '.[ray]'")):
        launchers.for_config(cfg).start(placement, 2)


# --- SLURM (submitit) --------------------------------------------------------------------------------


def test_slurm_agents_through_submitits_local_executor_train_the_search(tmp_path, processes):
    pytest.importorskip("submitit", reason="the slurm extra: pip install -e '.[slurm]'")
    search = _search(
        tmp_path,
        "tuner.launcher=slurm",
        "tuner.slurm.executor=local",
        "tuner.workers=2",
        "tuner.max_trials=3",
        "tuner.pack=1",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "ensemble=none",
    )
    processes.append(search)
    assert search.wait(300) == 0, search.output()[-3000:]
    output = search.output()
    found = re.search(r"2 agents as SLURM job\(s\) ([\d, ]+) \(local executor\); their logs in (.+)$", output, re.M)
    assert found, output[-3000:]
    job_ids = found.group(1).split(", ")
    _, _, trials = _trials(tmp_path, output)
    _one_finished_run_per_trial(trials, 3)
    # Each trial run names its job; the jobs' own logs hold the agents' lines (where submitit puts them).
    workers = {t.data.tags["sweeplab.worker"] for t in trials}
    assert all(re.fullmatch(r"slurm:[^:]+:(\d+)(_\d+)?-[0-9a-f]{6}@.+:\d+", w) for w in workers), workers
    assert {re.match(r"slurm:[^:]+:(\d+)", w).group(1) for w in workers} <= set(job_ids)
    logs = Path(found.group(2).replace("<job id>", job_ids[0]))
    assert "asks for trials as slurm:" in "".join(p.read_text() for p in logs.glob("*_log.out"))


# --- Ray ----------------------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def node_namespace():
    """{"host": address on the bridge, "node": the namespace's address, "ns": its name}: a second
    machine for a Ray node (a bridge and one veth pair; test_hosts.py makes three)."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        unavailable("network namespaces need iproute2's `ip` and root")
    tag = uuid.uuid4().hex[:5]
    subnet = f"10.{180 + int(tag[:2], 16) % 60}.{int(tag[2:4], 16)}"
    bridge, ns, outside, inside = f"swr{tag}", f"swr{tag}n", f"swr{tag}o", f"swr{tag}i"
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        _ip("netns", "add", ns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "master", bridge, "up")
        _ip("-n", ns, "addr", "add", f"{subnet}.2/24", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as err:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        unavailable(f"cannot make network namespaces here: {err.stderr.decode().strip()}")
    yield {"host": f"{subnet}.1", "node": f"{subnet}.2", "ns": ns}
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def _ray_node(prefix: list, ray_args: list, log: Path, processes: list) -> Process:
    """`ray start --block ...` as a process group of its own (its GCS, raylet and workers with it),
    stopped by that group at the end, never by `ray stop` (which kills every Ray here by name)."""
    args = [*prefix, str(BIN / "ray"), "start", "--block", *ray_args]
    node = Process(args, log.parent, log, extra_env=RAY_ENV)
    processes.append(node)
    until(lambda: "Ray runtime started" in node.output(), 120, f"the Ray node of {log.name}", node)
    return node


@pytest.fixture
def two_node_ray(node_namespace, processes):
    """A Ray cluster of two one-CPU nodes: the head on the host's bridge address, one in the namespace."""
    pytest.importorskip("ray", reason="the ray extra: pip install -e '.[ray]'")
    head_ip, node_ip, port = node_namespace["host"], node_namespace["node"], free_port()
    # Unix socket paths must stay short: the session's files under a short temporary folder.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    common = ["--num-cpus=1", "--num-gpus=0", "--object-store-memory=80000000", "--disable-usage-stats"]
    # The host's own ports, not Ray's defaults: another Ray on this machine may hold those.
    names = ("ray-client-server-port", "dashboard-agent-listen-port", "metrics-export-port", "runtime-env-agent-port")
    head_args = [
        f"--node-ip-address={head_ip}",
        f"--port={port}",
        "--include-dashboard=false",
        f"--temp-dir={temp_dir}",
    ]
    head_args += [f"--{n}={free_port()}" for n in names]
    in_namespace = ["ip", "netns", "exec", node_namespace["ns"]]
    nodes = [_ray_node([], ["--head", *head_args, *common], temp_dir / "head.log", processes)]
    nodes.append(
        _ray_node(
            in_namespace,
            [f"--address={head_ip}:{port}", f"--node-ip-address={node_ip}", *common],
            temp_dir / "node.log",
            processes,
        )
    )
    yield {"address": f"{head_ip}:{port}", "head": head_ip, "node": node_ip}
    for node in nodes:  # Ray takes 20 s to stop on SIGTERM: its processes have nothing to save
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _kill_an_actor_mid_trial(client, run_id: str, ray_cluster: dict, search: Process) -> tuple[str, str]:
    """Once agents on both nodes finished a trial, SIGKILL the actor (the Ray worker process) of an
    agent mid-trial (its agent dies with it); (that trial's id, the agent's worker tag)."""
    experiment_id = client.get_run(run_id).info.experiment_id

    def running_after_both_finished():
        trials = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'trial'")
        finished = {
            RAY_TAG.match(r.data.tags["sweeplab.worker"]).group(1) for r in trials if r.info.status == "FINISHED"
        }
        running = [r for r in trials if r.info.status == "RUNNING" and r.data.tags.get("sweeplab.worker")]
        # Even once every trial is handed out: the other agent waits for the lost one (search/retries.py).
        return running if finished == {ray_cluster["head"], ray_cluster["node"]} else None

    def killed():
        """The actor of a trial's agent killed, while that trial still runs (a race: it may just have ended)."""
        for victim in running_after_both_finished() or []:
            tag = victim.data.tags["sweeplab.worker"]
            try:
                os.kill(_parent_of(int(tag.rsplit(":", 1)[1])), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                continue  # that agent's trial ended meanwhile, or the agent did
            return victim.data.tags["sweeplab.trial_id"], tag
        return None

    return until(killed, 240, "a trial running once both nodes finished one", search)


def test_ray_actors_on_two_nodes_train_every_trial_once_though_one_is_killed_mid_trial(
    tmp_path, processes, two_node_ray
):
    search = _search(
        tmp_path,
        "tuner.launcher=ray",
        "tuner.workers=2",
        f"tuner.ray.address={two_node_ray['address']}",
        "tuner.ray.max_restarts=1",
        # The namespace's agent reaches the oracle on the bridge: off loopback, with the token.
        f"tuner.oracle.host={two_node_ray['head']}",
        *FEW_SECOND_TRIALS,
        extra_env={"SWEEPLAB_ORACLE_TOKEN": TOKEN, **RAY_ENV},
    )
    processes.append(search)
    found = until(lambda: re.search(r"\(MLflow run (\w+),", search.output()), 120, "the search run", search)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    killed_trial, killed_tag = _kill_an_actor_mid_trial(client, found.group(1), two_node_ray, search)
    assert search.wait(400) == 0, search.output()[-4000:]
    output = search.output()
    _, run_id, trials = _trials(tmp_path, output)
    by_trial = _one_finished_run_per_trial(trials, TRIALS, output)

    # The killed agent's run of its trial ended FAILED (agent lost), and another trained it again.
    killed_runs = {r.info.status: r for r in by_trial[killed_trial]}
    assert killed_runs["FAILED"].data.tags["sweeplab.worker"] == killed_tag
    assert killed_runs["FINISHED"].data.tags["sweeplab.worker"] != killed_tag
    # Ray restarted the killed actor (same actor id), whose new agent asked for trials again.
    actor = RAY_TAG.match(killed_tag).group(2)
    assert len(set(re.findall(rf"asks for trials as (ray:[\d.]+:{actor}-\w+)", output))) == 2, output[-4000:]
    # Trials trained to the end on both nodes, each run naming its node and actor.
    finished = [r for runs in by_trial.values() for r in runs if r.info.status == "FINISHED"]
    nodes = {RAY_TAG.match(r.data.tags["sweeplab.worker"]).group(1) for r in finished}
    assert nodes == {two_node_ray["head"], two_node_ray["node"]}
    # The token went to the actors through their environment only: not printed, not logged.
    assert TOKEN not in output
    for run in [client.get_run(run_id), *trials]:
        assert TOKEN not in str(run.data.params) + str(run.data.tags)


MULTIRUN_LAUNCHERS = {
    # A Ray of its own (null would join whatever cluster this machine last started).
    "ray": ["hydra.launcher.ray.init.address=local", "+hydra.launcher.ray.init.include_dashboard=false"],
    "submitit_local": [],
}


@pytest.mark.parametrize("launcher", MULTIRUN_LAUNCHERS)
def test_a_multirun_on_a_cluster_launcher_writes_its_searches_to_one_experiment(tmp_path, launcher):
    plugin = "ray" if launcher == "ray" else "submitit"
    pytest.importorskip(
        f"hydra_plugins.hydra_{plugin}_launcher", reason=f"the {plugin} extra: pip install -e '.[ray,slurm]'"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweeplab",
            "-m",
            f"hydra/launcher={launcher}",
            *MULTIRUN_LAUNCHERS[launcher],
            "model.space.units=16,32",
            "tuner.max_trials=2",
            "trainer.epochs=1",
            "trainer.verbose=0",
            "tracking.experiment=multi",
            "ensemble=none",
        ],
        cwd=tmp_path,
        env={**env(), "RAY_USAGE_STATS_ENABLED": "0"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert launcher != "ray" or "Ray Launcher is launching 2 jobs" in output
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("multi")
    searches = client.search_runs([experiment.experiment_id], "tags.`sweeplab.role` = 'search'")
    assert sorted(s.data.params.get("model.space.units") or _units(s) for s in searches) == ["16", "32"]
    assert {s.info.status for s in searches} == {"FINISHED"}
    trials = client.search_runs([experiment.experiment_id], "tags.`sweeplab.role` = 'trial'")
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {s.info.run_id for s in searches}
    others = [e.experiment_id for e in client.search_experiments() if e.name != "multi"]
    assert not client.search_runs(others, "tags.`sweeplab.role` = 'search'")  # every search in "multi"


def _units(search) -> str:
    return re.search(r"model\.space\.units=(\d+)", search.data.tags["sweeplab.overrides"]).group(1)


SLURM_CONF = """ClusterName=sweeplab
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={dir}/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
NodeName=localhost CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def one_node_slurm(processes):
    """A SLURM controller and node daemon of this test's own (Debian's slurm-wlm and munge), and the
    environment that points sbatch at them."""
    daemons = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")
    missing = [name for name in daemons if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if missing or not Path("/etc/munge/munge.key").exists():
        # Optional, in CI too: submitit's local executor runs the same agent path above.
        pytest.skip(f"a one-node SLURM needs Debian's slurm-wlm (missing: {', '.join(missing or ['munge.key'])})")
    if os.geteuid() != 0:
        unavailable("a one-node SLURM of the test's own runs its daemons as root")
    folder = Path(tempfile.mkdtemp(prefix="slurm", dir="/tmp"))  # munge's socket path must stay short
    (folder / "state").mkdir()
    (folder / "spool").mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(dir=folder, ctld_port=free_port(), slurmd_port=free_port(), cpus=max(2, os.cpu_count() or 2))
    )
    slurm_env = {"SLURM_CONF": str(conf)}
    munge = ["munged", "--foreground", "--force", f"--socket={folder}/munge.sock", f"--pid-file={folder}/munged.pid"]
    munge += [f"--log-file={folder}/munged.log", f"--seed-file={folder}/munge.seed"]
    started = [Process(munge, folder, folder / "munged.out")]
    until(lambda: (folder / "munge.sock").exists(), 30, "munged's socket", started[0])
    for daemon in (["slurmctld", "-D", "-f", str(conf)], ["slurmd", "-D", "-N", "localhost", "-f", str(conf)]):
        started.append(Process(daemon, folder, folder / f"{daemon[0]}.out", extra_env=slurm_env))
    processes.extend(started)
    sinfo = ["sinfo", "-h", "-o", "%t"]
    idle = lambda: "idle" in subprocess.run(sinfo, env={**env(), **slurm_env}, capture_output=True, text=True).stdout  # noqa: E731
    until(idle, 60, "the SLURM node idle", *started)
    yield slurm_env
    for process in reversed(started):
        process.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_slurm_agents_as_a_real_job_array_train_the_search(tmp_path, processes, one_node_slurm):
    pytest.importorskip("submitit", reason="the slurm extra: pip install -e '.[slurm]'")
    search = _search(
        tmp_path,
        "tuner.launcher=slurm",
        "tuner.workers=2",
        "tuner.slurm.time_min=10",
        "tuner.max_trials=3",
        "tuner.pack=1",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "ensemble=none",
        extra_env=one_node_slurm,
    )
    processes.append(search)
    assert search.wait(300) == 0, search.output()[-3000:]
    output = search.output()
    array = re.search(r"2 agents as SLURM job\(s\) (\d+) \(slurm executor\)", output)
    assert array, output[-3000:]
    _, _, trials = _trials(tmp_path, output)
    _one_finished_run_per_trial(trials, 3)
    # The agents ran as tasks of that one array (job id <array>_<task>).
    jobs = {re.match(r"slurm:[^:]+:([\d_]+)-", t.data.tags["sweeplab.worker"]).group(1) for t in trials}
    assert jobs <= {f"{array.group(1)}_0", f"{array.group(1)}_1"} and jobs, jobs
