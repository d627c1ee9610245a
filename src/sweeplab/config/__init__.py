"""Config: the schema of every config group (`schema`), each group's base in Hydra's
ConfigStore (`store`: registered on import, so that `conf/` option files extend it), the
validation of a composed Hydra config before anything runs (`validation`: it asks the data
layer which data sets exist and each model family for its own schema), and a search's
identity (`identity`).

May import: sweeplab.errors, sweeplab.net, sweeplab.space, sweeplab.data, sweeplab.models.
"""

# Hydra imports this package (conf/config.yaml's search path: pkg://sweeplab.config) before it
# composes a config: the option files' bases must be in the ConfigStore by then.
from sweeplab.config import store  # noqa: F401
