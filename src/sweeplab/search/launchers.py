"""Who starts a search's `tuner.workers` agents (`tuner.launcher`), behind one small interface:

- `local`: processes of this machine (`python -m sweeplab.search.worker`), the default;
- `ray`: Ray actors on the cluster at `tuner.ray.address` or $RAY_ADDRESS (a Ray started here when
  neither is set), each reserving `tuner.ray.num_cpus` and `.num_gpus` and restarted by Ray up to
  `tuner.ray.max_restarts` times;
- `slurm`: a SLURM job array submitted with submitit (`tuner.slurm.*`; `executor=local` runs the same
  jobs as processes here).

A Ray actor or a SLURM job runs an agent (`python -m sweeplab.agent`) as its child, which
dies with it: killing the actor or cancelling the job ends the agent, and the chief hands its trial
on when its lease expires. The oracle's token and the store's credentials reach the agents through
their environment (Ray's runtime_env env_vars; the job's environment at submission), never through
their arguments, a file or a log. Ray and submitit are imported only here, only when asked for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sweeplab.errors import SweeplabError

# The store's credentials an agent needs beside its URI (MLflow reads them from the environment).
_STORE_SECRETS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
_INTERRUPT_GRACE_S = 60
_EXIT_LOST = 1  # an actor Ray gave up on, a job that ended without a result


@dataclass
class Placement:
    """What a launcher needs to start the agents of one search."""

    cfg: object
    search_run_id: str
    # A local worker's config file and environment (chief._worker_env: oracle, store, token).
    config_file: Path
    env: dict
    project_dir: Path


class Launcher:
    """Starts `count` agents; each handle has poll() (None while running, else its exit code) and wait()."""

    def start(self, placement: Placement, count: int) -> list:
        raise NotImplementedError

    def stop(self, agents: list) -> None:
        """The search was interrupted or failed: end the agents."""

    def close(self) -> None:
        """The search is over: let go of the cluster."""


def for_config(cfg) -> Launcher:
    kind = cfg.tuner.launcher.value
    return {"local": LocalLauncher, "ray": RayLauncher, "slurm": SlurmLauncher}[kind](cfg)


def agent_env(placement: Placement, pin: str | None = None) -> dict:
    """The secrets and settings a placed agent needs, for its environment (never its arguments)."""
    from sweeplab.config.schema import ORACLE_CERT_SHA256_ENV
    from sweeplab.search.chief import ENV_TRACKING_URI
    from sweeplab.search.oracle_access import ENV_TOKEN

    env = {
        "MLFLOW_TRACKING_URI": placement.env[ENV_TRACKING_URI],
        ENV_TOKEN: placement.env[ENV_TOKEN],
        **{k: os.environ[k] for k in _STORE_SECRETS if os.environ.get(k)},
    }
    if pin:
        env[ORACLE_CERT_SHA256_ENV] = pin
    return env


def _pin(cfg) -> str | None:
    """The SHA-256 of the oracle's certificate: placed agents trust no other (the search run could be edited)."""
    from sweeplab.search.oracle_access import cert_sha256

    cert = cfg.tuner.oracle.tls_cert
    return cert_sha256(Path(cert).read_bytes()) if cert else None


def run_agent(search_run_id: str, name: str) -> int:
    """One agent as a child of this process (a Ray actor, a SLURM job), killed with it; its exit code.
    The store's URI and the secrets come from this process's environment."""
    from sweeplab.config.schema import AGENT_NAME_ENV

    child = subprocess.Popen(
        [sys.executable, "-m", "sweeplab.agent", search_run_id],
        env={**os.environ, AGENT_NAME_ENV: name},
        preexec_fn=_die_with_parent,
    )
    try:
        return child.wait()
    except BaseException:
        child.kill()
        raise


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when its parent (the actor, the job) dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _PlacedAgent:
    """An agent a cluster runs (a Ray actor's task, a SLURM job) as the chief polls it, like a
    local worker's Popen: its exit code once it has ended, _EXIT_LOST if the cluster lost it."""

    code: int | None = None
    poll_s = 0.2

    def _ended(self) -> bool:
        raise NotImplementedError

    def _exit_code(self) -> int:
        raise NotImplementedError

    def poll(self) -> int | None:
        if self.code is None and self._ended():
            self.code = self._exit_code()
        return self.code

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(self.poll_s)
        return self.code


# --- local: processes of this machine (tuner.workers > 1 without a launcher) -------------------------


class LocalLauncher(Launcher):
    def __init__(self, cfg):
        self.cfg = cfg

    def start(self, placement: Placement, count: int) -> list:
        from sweeplab.search.chief import WORKER_PREFIX

        return [
            subprocess.Popen(
                [sys.executable, "-m", "sweeplab.search.worker", str(placement.config_file)],
                env={**placement.env, "KERASTUNER_TUNER_ID": f"{WORKER_PREFIX}{index}"},
            )
            for index in range(count)
        ]

    def stop(self, agents: list) -> None:
        """Ctrl-C reached the workers too (one process group): let them mark their runs KILLED."""
        deadline = time.monotonic() + 5
        while any(p.poll() is None for p in agents) and time.monotonic() < deadline:
            time.sleep(0.1)
        for proc in agents:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in agents:
            try:
                proc.wait(timeout=_INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- ray: actors on a Ray cluster ---------------------------------------------------------------------


def _import(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SweeplabError(
            f"tuner.launcher={extra} needs {module}: pip install -e '.[{extra}]' (in a clone of sweeplab)"
        ) from None


class RayAgent:
    """A Ray actor whose one task is an agent of the search (a child process that dies with the actor)."""

    def run(self, search_run_id: str) -> int:
        import ray

        name = f"ray:{ray.util.get_node_ip_address()}:{ray.get_runtime_context().get_actor_id()}"
        return run_agent(search_run_id, name)


class _RayTask(_PlacedAgent):
    """An actor's agent task as the chief polls it."""

    def __init__(self, ray, ref):
        self.ray, self.ref = ray, ref

    def _ended(self) -> bool:
        return bool(self.ray.wait([self.ref], timeout=0)[0])

    def _exit_code(self) -> int:
        try:
            return self.ray.get(self.ref)
        except self.ray.exceptions.RayError as err:  # the actor died past max_restarts
            print(f"[sweeplab] a Ray agent is gone: {type(err).__name__}", flush=True)
            return _EXIT_LOST


class RayLauncher(Launcher):
    def __init__(self, cfg):
        self.cfg, self.actors, self.ray, self.owns_ray = cfg, [], None, False

    def start(self, placement: Placement, count: int) -> list:
        ray = self.ray = _import("ray", "ray")
        settings = self.cfg.tuner.ray
        address = settings.address or os.environ.get("RAY_ADDRESS")
        # Neither: a Ray of its own ("local"; None would join whatever cluster this machine last
        # started), without a dashboard to serve (and pay for) here.
        local = {} if address else {"include_dashboard": False}
        # Already in Ray (a search run by hydra/launcher=ray): its actors go to that cluster.
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            ray.init(address=address or "local", log_to_driver=True, logging_level="warning", **local)
        actor_class = ray.remote(
            num_cpus=settings.num_cpus,
            num_gpus=settings.num_gpus,
            max_restarts=settings.max_restarts,
            # A restarted actor runs its agent again (the lost trial goes to whoever asks first).
            max_task_retries=settings.max_restarts,
        )(RayAgent)
        options = {"runtime_env": {"env_vars": agent_env(placement, _pin(self.cfg))}}
        self.actors = [actor_class.options(**options).remote() for _ in range(count)]
        tasks = [_RayTask(ray, actor.run.remote(placement.search_run_id)) for actor in self.actors]
        where = address or "a Ray started on this machine"
        print(f"[sweeplab] {count} agents as Ray actors on {where}", flush=True)
        return tasks

    def stop(self, agents: list) -> None:
        """The actors killed, their agents with them: the runs they were training stay RUNNING until
        the search is resumed (a local worker gets the Ctrl-C and ends them KILLED)."""
        for actor in self.actors:
            with contextlib.suppress(Exception):  # one already gone
                self.ray.kill(actor)

    def close(self) -> None:
        if self.ray is not None and self.ray.is_initialized():
            self.stop([])
            if self.owns_ray:
                self.ray.shutdown()


# --- slurm: a job array through submitit --------------------------------------------------------------


def slurm_agent(search_run_id: str) -> int:
    """A SLURM job (or submitit local job) of the array: one agent."""
    import socket

    import submitit

    job = submitit.JobEnvironment()
    return run_agent(search_run_id, f"slurm:{socket.gethostname()}:{job.job_id}")


class _SlurmJob(_PlacedAgent):
    poll_s = 0.5

    def __init__(self, job):
        self.job = job

    def _ended(self) -> bool:
        return self.job.done()

    def _exit_code(self) -> int:
        try:
            return self.job.result()
        except Exception as err:  # submitit's: the job failed or ended without a result
            print(f"[sweeplab] SLURM job {self.job.job_id}: {str(err).splitlines()[0]}", flush=True)
            return _EXIT_LOST


class SlurmLauncher(Launcher):
    def __init__(self, cfg):
        self.cfg, self.jobs = cfg, []

    def start(self, placement: Placement, count: int) -> list:
        submitit = _import("submitit", "slurm")
        settings = self.cfg.tuner.slurm
        folder = settings.folder or str(placement.project_dir / "submitit" / "%j")
        executor = submitit.AutoExecutor(folder=folder, cluster=settings.executor.value)
        executor.update_parameters(**_slurm_parameters(settings))
        # sbatch (and the local executor) hand the jobs this environment: the secrets go no other way.
        with _environment(agent_env(placement, _pin(self.cfg))):
            self.jobs = executor.map_array(slurm_agent, [placement.search_run_id] * count)
        ids = sorted({job.job_id.split("_")[0] for job in self.jobs})
        print(
            f"[sweeplab] {count} agents as SLURM job(s) {', '.join(ids)} ({settings.executor.value} executor); "
            f"their logs in {folder.replace('%j', '<job id>')}",
            flush=True,
        )
        return [_SlurmJob(job) for job in self.jobs]

    def stop(self, agents: list) -> None:
        for job in self.jobs:
            with contextlib.suppress(Exception):  # one already ended
                job.cancel(check=False)


def _slurm_parameters(settings) -> dict:
    parameters = {
        "name": "sweeplab-agent",
        "timeout_min": settings.time_min,
        "cpus_per_task": settings.cpus_per_task,
        "gpus_per_node": settings.gpus_per_node,
    }
    if settings.mem_gb is not None:
        parameters["mem_gb"] = settings.mem_gb
    if settings.partition:
        parameters["slurm_partition"] = settings.partition
    return parameters


@contextlib.contextmanager
def _environment(values: dict):
    """`values` in this process's environment for the block, as before afterwards."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
