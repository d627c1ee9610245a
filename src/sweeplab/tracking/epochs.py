"""Per-epoch metrics of a trial, written to MLflow off the training thread (`writer`)."""

from __future__ import annotations

import time

from sweeplab.tracking import writer
from sweeplab.tracking.batches import log_metrics


class EpochLogger:
    """Keras callback body: one `log_batch` per epoch with every metric, written
    in the background so training does not wait for the store; `flush()` waits
    and raises the first write that failed after its retries."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self.history: dict[str, list[float]] = {}
        self.pending: list = []

    def flush(self) -> None:
        while self.pending:
            self.pending.pop(0).result()

    def callback(self):
        import keras

        logger = self

        class _Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
                for key, value in logs.items():
                    logger.history.setdefault(key, []).append(value)
                now = int(time.time() * 1000)
                logger.pending.append(writer.submit(log_metrics, logger.client, logger.run_id, logs, epoch, now))

        return _Callback()
