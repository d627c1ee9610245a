"""Each config group's base, registered with Hydra's ConfigStore from the schema's
dataclasses, so that the defaults live in one place and an option file in `conf/`
holds only what differs (Hydra's "extending configs" pattern):

    # conf/tuner/grid.yaml
    defaults:
      - /base_tuner@_here_
      - _self_
    kind: grid
    max_trials: 50

Bases are named `base_<group>`, plus `base_<group>_<option>` where a group has fields
that only some options hold (`schema.only`), and `base_model_<family>` for each model
family's `Config`. They are group-less configs, so `--help` does not list them as
options. Importing this package registers them: `conf/config.yaml` puts
`pkg://sweeplab.config` on Hydra's search path, which imports it before composing.

The bases are plain data, not typed: values are checked by `validation.py`, which
names the bad key and what it expects in one line, before anything runs.
"""

from __future__ import annotations

import dataclasses

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from sweeplab.config.schema import (
    DataConfig,
    EnsembleConfig,
    PrunerConfig,
    RootConfig,
    TrackingConfig,
    TrainerConfig,
    TunerConfig,
)
from sweeplab.models import FAMILIES, get_family

GROUP_SCHEMAS = {
    "data": DataConfig,
    "tuner": TunerConfig,
    "pruner": PrunerConfig,
    "trainer": TrainerConfig,
    "tracking": TrackingConfig,
    "ensemble": EnsembleConfig,
}


def base_of(schema: type, option: str | None = None) -> dict:
    """The schema's defaults as plain data: the fields every option holds, and those only `option` holds.
    A field without a default (MISSING) stays `???`: each option must set it."""
    defaults = OmegaConf.to_container(OmegaConf.structured(schema), enum_to_str=True)
    held = {f.name for f in dataclasses.fields(schema) if option in f.metadata.get("only", (option,))}
    return {key: value for key, value in defaults.items() if key in held}


def bases() -> dict[str, dict]:
    """{name in the ConfigStore: base}: every group's, every option-specific one, every model family's."""
    found = {"base_config": base_of(RootConfig)}
    for group, schema in GROUP_SCHEMAS.items():
        found[f"base_{group}"] = base_of(schema)
        options = {option for f in dataclasses.fields(schema) for option in f.metadata.get("only", ())}
        found.update({f"base_{group}_{option}": base_of(schema, option) for option in sorted(options)})
    for family in FAMILIES:
        found[f"base_model_{family}"] = base_of(get_family(family).Config)
    return found


def register() -> None:
    store = ConfigStore.instance()
    for name, node in bases().items():
        store.store(name=name, node=node, provider="sweeplab")


register()
