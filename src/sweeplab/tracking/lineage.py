"""The data set as MLflow dataset inputs (name, digest, source, split sizes):
the runs table's Dataset column, and the split each final metric was measured on."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

# Split attribute -> MLflow's dataset context.
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
# What SQLite and PostgreSQL say when two writers insert the same data set at once.
_COLLISIONS = ("UNIQUE constraint failed", "duplicate key value")
_COLLISION_RETRIES = 3


def split_datasets(dataset) -> dict:
    """{split: mlflow.data.Dataset} for the train, val and test splits (digests are computed here)."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if os.path.isfile(dataset.source):
        with warnings.catch_warnings():
            # MLflow registers its local-file source twice (schemes "" and "file") and says so.
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
            source = resolve_dataset_source(Path(dataset.source).resolve().as_uri())
    else:
        source = CodeDatasetSource({"loader": dataset.source})
    return {
        split: mlflow.data.from_numpy(
            getattr(dataset, split).inputs,
            targets=getattr(dataset, split).targets,
            source=source,
            name=f"{dataset.name}-{split}",
        )
        for split in CONTEXTS
    }


def log_dataset_inputs(client, run_id: str, datasets: dict) -> None:
    """`datasets` (from `split_datasets`) as the run's inputs, each tagged with its split's context."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = [
        DatasetInput(data._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[split])])
        for split, data in datasets.items()
    ]
    for attempt in range(_COLLISION_RETRIES + 1):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except Exception as err:
            # Searches started together (a parallel multirun) log the same data set at once: one
            # insert wins, the others collide on it; sent again, they find it and link to it.
            if attempt == _COLLISION_RETRIES or not any(m in str(err) for m in _COLLISIONS):
                raise
            time.sleep(0.1 * (attempt + 1))
