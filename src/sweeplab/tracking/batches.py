"""Params, metrics and files written to a run in as few store calls as possible."""

from __future__ import annotations

import os
import tempfile
import time

from sweeplab.tracking.store import redact

MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> {'a.b.c': 'value'} for MLflow params."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def log_params(client, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    items = [Param(k, redact(v)) for k, v in params.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])


def log_metrics(
    client,
    run_id: str,
    metrics: dict,
    step: int = 0,
    timestamp_ms: int | None = None,
    model_id: str | None = None,
    dataset=None,
) -> None:
    """Every metric in one `log_batch`; linked to a logged model and the (MLflow) dataset
    it was measured on, when given."""
    from mlflow.entities import Metric

    now = timestamp_ms or int(time.time() * 1000)
    data = dict(dataset_name=dataset.name, dataset_digest=dataset.digest) if dataset is not None else {}
    client.log_batch(
        run_id, metrics=[Metric(k, float(v), now, step, model_id=model_id, **data) for k, v in metrics.items()]
    )


def log_bytes(client, run_id: str, data: bytes, path: str) -> None:
    """`data` as the artifact `path` (a file name, optionally under folders)."""
    folder, _, name = path.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, name)
        with open(local, "wb") as handle:
            handle.write(data)
        client.log_artifact(run_id, local, folder or None)
