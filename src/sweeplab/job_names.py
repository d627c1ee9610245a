"""The name of each job of a Hydra multirun, which starts its output lines: `[mlp/random] ` (its family
and tuner), with the values of the other keys the multirun sweeps when jobs differ by more,
e.g. `[mlp/random units=32] `."""

from __future__ import annotations

from pathlib import Path

# Keys the family and tuner already name: shown only when their value is not that name.
_NAMED = {"model": "family", "model.family": "family", "tuner": "tuner", "tuner.kind": "tuner"}


def job_prefix(cfg) -> str | None:
    """The prefix of this Hydra job's lines in a multirun; None in a single run (no -m)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    kind = OmegaConf.select(cfg, "tuner.kind", default="?")
    names = {"family": str(OmegaConf.select(cfg, "model.family", default="?")), "tuner": getattr(kind, "value", kind)}
    name = job_name(names, _sweep_overrides(hydra_cfg), list(hydra_cfg.overrides.task), hydra_cfg.job.num)
    return f"[{name}] "


def job_name(names: dict, sweep: list[str] | None, job_overrides: list[str], job_num: int) -> str:
    """`family/tuner` and `key=value` of each other key `sweep` (the multirun's overrides) varies, as
    this job's overrides set it. `sweep` None (another sweeper's, unknown): the job's number instead."""
    base = f"{names['family']}/{names['tuner']}"
    if sweep is None:
        return f"{base} #{job_num}"
    swept = [override.key_or_group for override in _parsed(sweep) if override.is_sweep_override()]
    values = {override.key_or_group: override.get_value_element_as_str() for override in _parsed(job_overrides)}
    shown = [key for key in swept if key in values and values[key] != names.get(_NAMED.get(key, ""))]
    last_parts = [key.rpartition(".")[2] for key in shown]
    # A key's last part (`units`) is enough, unless two shown keys share it.
    labels = [part if last_parts.count(part) == 1 else key for key, part in zip(shown, last_parts)]
    return " ".join([base, *(f"{label}={values[key]}" for key, label in zip(shown, labels))])


def _parsed(overrides: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(overrides)


def _sweep_overrides(hydra_cfg) -> list[str] | None:
    """The multirun's own overrides (`tuner=random,grid ...`) and its sweeper's `params`: Hydra's basic
    sweeper saved them in the sweep folder before it launched any job (in this process or another)."""
    from omegaconf import OmegaConf

    folder = Path(hydra_cfg.sweep.dir)
    if not folder.is_absolute():
        folder = Path(hydra_cfg.runtime.cwd) / folder
    try:
        saved = OmegaConf.load(folder / "multirun.yaml").hydra
        params = saved.sweeper.get("params") or {}
        sweep = [*(f"{key}={value}" for key, value in params.items()), *saved.overrides.task]
        _parsed(sweep)
    except Exception:  # another sweeper, or a file it did not write: jobs are told apart by number
        return None
    return sweep
