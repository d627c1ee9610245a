"""Checks on a loaded data set, before it is split and before any training.

Every loader (digits, npz, csv, ...) ends in `check_arrays`, so a bad file fails
with one message that names its source, the bad value and what was expected,
instead of a NaN loss or a shape error deep inside Keras.
"""

from __future__ import annotations

import numpy as np

from sweeplab.errors import DataError


def check_arrays(
    x,
    y,
    *,
    source: str,
    num_classes: int | None = None,
    classification: bool = True,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
) -> None:
    """Raise DataError naming `source` (a file or data set) if x, y cannot be trained on.

    x: inputs, one row per sample; y: integer class labels (classification) or
    targets. With the split fractions given, every class must be able to appear in
    train, val and test of a stratified split.
    """
    x, y = np.asarray(x), np.asarray(y)
    _check_inputs(x, y, source)
    if not classification:
        if not np.issubdtype(y.dtype, np.number):
            raise DataError(f"{source}: targets have dtype {y.dtype}; expected numbers")
        _check_finite(y, "targets", source)
        return
    _check_labels(y, len(x), source, num_classes)
    if val_fraction is not None and test_fraction is not None:
        _check_stratifiable(y, source, val_fraction, test_fraction)


def _check_inputs(x: np.ndarray, y: np.ndarray, source: str) -> None:
    """Inputs: at least two axes, at least one row, one label per row, finite real numbers."""
    if x.ndim < 2:
        raise DataError(f"{source}: inputs have shape {x.shape}; expected (samples, features...) with at least 2 axes")
    if len(x) == 0:
        raise DataError(f"{source}: no samples; expected at least one row")
    if len(y) != len(x):
        raise DataError(
            f"{source}: {len(x)} input rows but {len(y)} labels; expected one label per row (labels shape {y.shape})"
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{source}: inputs have dtype {x.dtype}; expected real numbers")
    _check_finite(x, "inputs", source)


def _check_labels(y: np.ndarray, samples: int, source: str, num_classes: int | None) -> None:
    """Class labels: one integer per sample, in 0..num_classes-1 (0 or more when not given)."""
    if y.ndim != 1:
        raise DataError(
            f"{source}: labels have shape {y.shape}; expected one integer class label per sample, shape ({samples},)"
        )
    if not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{source}: labels have dtype {y.dtype}; expected integer class labels 0..K-1")
    _check_finite(y, "labels", source)
    if not np.all(np.equal(np.mod(y, 1), 0)):
        bad = y[np.mod(y, 1) != 0][0]
        raise DataError(f"{source}: label {bad!r} is not an integer; expected integer class labels 0..K-1")
    high = num_classes - 1 if num_classes else None
    if y.min() < 0 or (high is not None and y.max() > high):
        bad = y.min() if y.min() < 0 else y.max()
        expected = f"0..{high}" if high is not None else "0 or more"
        raise DataError(f"{source}: label {int(bad)} out of range; expected class labels {expected}")


def _check_stratifiable(y: np.ndarray, source: str, val_fraction: float, test_fraction: float) -> None:
    """Every class can appear in train, val and test of a stratified split."""
    classes, counts = np.unique(y, return_counts=True)
    # Each class needs a sample in test, in val and in train.
    need = 3
    rare = counts.argmin()
    if counts[rare] < need:
        raise DataError(
            f"{source}: class {classes[rare]} has {counts[rare]} sample(s); expected at least {need} "
            "for a stratified train/val/test split"
        )
    for split_name, fraction, remaining in (
        ("test", test_fraction, len(y)),
        ("val", val_fraction / (1 - test_fraction), len(y) * (1 - test_fraction)),
    ):
        size = int(np.ceil(fraction * remaining))
        if size < len(classes):
            raise DataError(
                f"{source}: the {split_name} split would hold {size} samples for {len(classes)} classes; "
                f"expected at least one per class (more samples, or a larger data.{split_name}_fraction)"
            )


def check_split(name: str, x, y, source: str) -> None:
    """A split after splitting: not empty, inputs and labels aligned."""
    if len(x) == 0 or len(y) == 0:
        raise DataError(f"{source}: the {name} split is empty; expected at least one sample")
    if len(x) != len(y):
        raise DataError(f"{source}: the {name} split has {len(x)} inputs but {len(y)} labels")


def _check_finite(a, what: str, source: str) -> None:
    if not np.issubdtype(a.dtype, np.floating):
        return
    bad = ~np.isfinite(a)
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), a.shape)
        raise DataError(
            f"{source}: {int(bad.sum())} {what} value(s) are NaN or infinite (first {a[index]} at index "
            f"{tuple(int(i) for i in index)}); expected finite numbers"
        )
