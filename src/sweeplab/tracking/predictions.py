"""A trial's predictions on the validation and test splits, saved once so that
ensembles never recompute them.

Layout of the `predictions.npz` artifact of a trial run (one array per key):

    val/<head>      the model's outputs on the validation split, shape (n_val, ...)
    test/<head>     the model's outputs on the test split
    y_val/<head>    the true targets of the validation split
    y_test/<head>   the true targets of the test split

A single-output model has one head, named `output` whatever its layer is
called, so that every family's single-output models line up. A multi-output
model has one head per Keras output name (`model.output_names`), so
ensembles can average each head separately.
"""

from __future__ import annotations

import io

import numpy as np

ARTIFACT = "predictions.npz"
SINGLE_HEAD = "output"
SPLITS = ("val", "test")


def head_names(model) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    return names if len(names) > 1 else [SINGLE_HEAD]


def by_head(values, heads: list[str]) -> dict[str, np.ndarray]:
    """Outputs or targets (array, list or dict) -> {head: array}, in `heads` order."""
    if isinstance(values, dict):
        missing = [h for h in heads if h not in values]
        if missing:
            raise ValueError(f"outputs have heads {sorted(values)}; expected {heads}")
        return {h: np.asarray(values[h]) for h in heads}
    if isinstance(values, (list, tuple)):
        if len(values) != len(heads):
            raise ValueError(f"got {len(values)} outputs; expected one per head {heads}")
        return {h: np.asarray(v) for h, v in zip(heads, values)}
    if len(heads) != 1:
        raise ValueError(f"got a single array; expected one per head {heads}")
    return {heads[0]: np.asarray(values)}


def outputs_of(model, x, rows_per_call: int = 1024):
    """The model's outputs for `x` (an array or a dict of arrays), called directly
    on slices: `predict()` would trace a graph for every trial's new model, which
    costs far more than a few hundred rows take to compute."""
    import keras

    rows = len(next(iter(x.values())) if isinstance(x, dict) else x)
    chunks = []
    for start in range(0, rows, rows_per_call):
        rows_here = slice(start, start + rows_per_call)
        part = keras.tree.map_structure(lambda a, rows_here=rows_here: a[rows_here], x)
        chunks.append(keras.tree.map_structure(keras.ops.convert_to_numpy, model(part, training=False)))
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts), *chunks)


def collect(model, dataset) -> dict[str, np.ndarray]:
    """The npz content for `model` on the dataset's val and test splits."""
    heads = head_names(model)
    arrays = {}
    for split_name in SPLITS:
        split = getattr(dataset, split_name)
        outputs = by_head(outputs_of(model, split.x), heads)
        targets = by_head(split.y, heads)
        for head in heads:
            arrays[f"{split_name}/{head}"] = outputs[head]
            arrays[f"y_{split_name}/{head}"] = targets[head]
    return arrays


def to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


class Predictions:
    """One trial's saved outputs and targets, per split and head."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.outputs: dict[str, dict[str, np.ndarray]] = {s: {} for s in SPLITS}
        self.targets: dict[str, dict[str, np.ndarray]] = {s: {} for s in SPLITS}
        for key, array in arrays.items():
            kind, _, head = key.partition("/")
            if kind in SPLITS:
                self.outputs[kind][head] = array
            elif kind.startswith("y_") and kind[2:] in SPLITS:
                self.targets[kind[2:]][head] = array
            else:
                raise ValueError(f"{ARTIFACT}: unexpected key {key!r}; expected <split>/<head> or y_<split>/<head>")

    @classmethod
    def load(cls, path) -> Predictions:
        with np.load(path) as data:
            return cls({k: data[k] for k in data.files})

    @property
    def heads(self) -> list[str]:
        return sorted(self.outputs["val"])

    def shapes(self) -> dict[str, tuple]:
        """{'val/<head>': shape, ...}: what must agree between ensemble members."""
        return {f"{s}/{h}": self.outputs[s][h].shape for s in SPLITS for h in sorted(self.outputs[s])}
