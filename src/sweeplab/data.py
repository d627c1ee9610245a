"""Data sets: load, split train / val / test (stratified, seeded), standardize.

Standardization statistics come from the train split only, so nothing about
the validation or test data leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sweeplab.errors import DataError

DATASETS = ("digits",)


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    task: str = "classification"

    @property
    def input_shape(self) -> tuple:
        return tuple(self.train.x.shape[1:])

    @property
    def metrics(self) -> list[str]:
        """Metrics Keras reports for this task, besides `loss`."""
        return ["accuracy"] if self.task == "classification" else ["mae"]

    def summary(self) -> str:
        return (
            f"{self.name}: input {self.input_shape}, {self.num_classes} classes, "
            f"train/val/test = {len(self.train)}/{len(self.val)}/{len(self.test)}"
        )


def load(cfg, seed: int) -> Dataset:
    """Load the data set named by `cfg.name` and split it."""
    if cfg.name == "digits":
        x, y = _load_digits()
    else:
        raise DataError(f"data.name: unknown data set {cfg.name!r}; expected one of {list(DATASETS)}")
    train, val, test = split(x, y, cfg.val_fraction, cfg.test_fraction, seed, source=f"data {cfg.name!r}")
    if cfg.standardize:
        train, val, test = standardize(train, val, test)
    return Dataset(cfg.name, train, val, test, num_classes=int(y.max()) + 1)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype("float32")[..., np.newaxis]  # (n, 8, 8, 1)
    return x, digits.target.astype("int64")


def split(
    x, y, val_fraction: float, test_fraction: float, seed: int, source: str = "data"
) -> tuple[Split, Split, Split]:
    """Stratified, seeded split into train / val / test; bad arrays fail first (checks.py)."""
    from sklearn.model_selection import train_test_split

    from sweeplab.checks import check_arrays, check_split

    check_arrays(x, y, source=source, val_fraction=val_fraction, test_fraction=test_fraction)

    try:
        x_rest, x_test, y_rest, y_test = train_test_split(
            x, y, test_size=test_fraction, stratify=y, random_state=seed
        )
        x_train, x_val, y_train, y_val = train_test_split(
            x_rest,
            y_rest,
            test_size=val_fraction / (1.0 - test_fraction),
            stratify=y_rest,
            random_state=seed,
        )
    except ValueError as err:
        raise DataError(f"{source}: cannot split into train/val/test: {err}") from None
    for name, xs, ys in (("train", x_train, y_train), ("val", x_val, y_val), ("test", x_test, y_test)):
        check_split(name, xs, ys, source)
    return Split(x_train, y_train), Split(x_val, y_val), Split(x_test, y_test)


def standardize(train: Split, val: Split, test: Split) -> tuple[Split, Split, Split]:
    """Scale every feature with the train split's mean and std."""
    mean = train.x.mean(axis=0)
    std = train.x.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # constant pixels (digit borders) stay 0
    return tuple(Split(((s.x - mean) / std).astype("float32"), s.y) for s in (train, val, test))
