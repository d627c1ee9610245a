"""`python -m sweeplab key=value ...`: one search, configured by Hydra."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from sweeplab.errors import SweeplabError

# The configs ship inside the package (a wheel has no checkout around it). An absolute path:
# Hydra resolves a relative one against the caller, which differs between entry points.
CONF_DIR = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sweeplab.app import run

    hydra_cfg = HydraConfig.get()
    try:
        # In a multirun the ensemble is built once, across all jobs, at the end.
        result = run(
            cfg,
            overrides=list(hydra_cfg.overrides.task),
            build_ensemble=hydra_cfg.mode != RunMode.MULTIRUN,
        )
    except SweeplabError as err:
        # A problem the user can fix: the message says which; no traceback.
        print(f"sweeplab: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        # Ctrl-C: the trial and search runs are already marked KILLED; the tuner state is on disk.
        print("sweeplab: interrupted; run the same command again to resume the search", file=sys.stderr, flush=True)
        sys.exit(130)
    # Returned so that a Hydra sweeper can optimize over searches.
    return result.best_score


if __name__ == "__main__":
    main()
