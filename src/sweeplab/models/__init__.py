"""Model families. Each module holds a family's config schema, the rules for
the hyperparameters its builder reads, and `build(values, dataset, cfg)`.

A new family is a module here, an entry in FAMILIES and a YAML file in
conf/model/. Modules import Keras only inside `build`, so validating a config
stays fast. `blocks` holds the layers families share, `shared` their schema.

May import: sweeplab.errors, sweeplab.space, sweeplab.data.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from sweeplab.errors import ConfigError

FAMILIES = {
    "mlp": "sweeplab.models.mlp",
    "mlp_variant": "sweeplab.models.mlp_variant",
    "inception": "sweeplab.models.inception",
    "residual": "sweeplab.models.residual",
    "multi_output": "sweeplab.models.multi_output",
}


def get_family(name) -> ModuleType:
    if name not in FAMILIES:
        raise ConfigError("model.family", name, f"one of {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])


def check_compatible(family: ModuleType, dataset) -> None:
    """Refuse a data set the family cannot take (a conv family on a table) before training.

    A family module may define `accepts(dataset) -> None | reason`; without it, any data set goes.
    """
    from sweeplab.errors import DataError

    accepts = getattr(family, "accepts", None)
    reason = accepts(dataset) if accepts else None
    if reason:
        raise DataError(reason)
