"""Data sets: load, split train / val / test (stratified, seeded), and the
statistics that standardize the inputs.

Every data set declares its named inputs (shapes) and targets (task, classes),
so that each model family can adapt to it or refuse it before training.
Splits hold the inputs as the data file holds them: standardization is the
model's own first layer (`models.blocks.model_inputs`), so a logged model takes
raw inputs. Its statistics come from the train split only, so nothing about
the validation or test data leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from sweeplab.data.loaders import LOADERS, origin
from sweeplab.errors import DataError

DATASETS = tuple(LOADERS)
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Input:
    name: str
    shape: tuple

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


@dataclass(frozen=True)
class Target:
    name: str
    task: str  # one of TASKS
    num_classes: int = 0  # 0 for regression

    @property
    def units(self) -> int:
        return self.num_classes if self.task == "classification" else 1


@dataclass
class Split:
    """One split as arrays keyed by input and target name."""

    inputs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.targets.values())))

    @property
    def x(self):
        """What Keras' fit takes: the array when there is one input, else the dict."""
        return _single_or_dict(self.inputs)

    @property
    def y(self):
        return _single_or_dict(self.targets)

    def take(self, n: int) -> Split:
        return Split({k: v[:n] for k, v in self.inputs.items()}, {k: v[:n] for k, v in self.targets.items()})


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    inputs: list[Input]
    targets: list[Target]
    # Input name -> (mean, std) per feature of the train split; empty when data.standardize is false.
    standardization: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # A file path or a library loader: where the arrays came from.
    source: str = ""

    def standardized(self, split: Split) -> Split:
        """`split`'s inputs as a model's layers see them after its standardization layer."""
        return Split(
            {
                k: _scale(v, *self.standardization[k]) if k in self.standardization else v
                for k, v in split.inputs.items()
            },
            split.targets,
        )

    @property
    def num_classes(self) -> int:
        return self.targets[0].num_classes

    @property
    def task(self) -> str:
        return self.targets[0].task

    @property
    def metrics(self) -> list[str]:
        """Metrics Keras reports with the default heads, besides `loss`."""
        from sweeplab.data.heads import reported_metrics, resolve_heads

        return reported_metrics(resolve_heads(self))

    def with_one_hot(self, names: list[str]) -> Dataset:
        """A copy whose named classification targets are one-hot (for losses such as MSE)."""
        classes = {t.name: t.num_classes for t in self.targets if t.name in names}

        def encode(split: Split) -> Split:
            targets = {
                k: np.eye(classes[k], dtype="float32")[v] if k in classes else v for k, v in split.targets.items()
            }
            return Split(split.inputs, targets)

        return replace(self, train=encode(self.train), val=encode(self.val), test=encode(self.test))

    def summary(self) -> str:
        inputs = ", ".join(f"{i.name} {i.shape}" for i in self.inputs)
        targets = ", ".join(
            f"{t.name} ({t.num_classes} classes)" if t.task == "classification" else f"{t.name} (regression)"
            for t in self.targets
        )
        return (
            f"{self.name}: inputs {inputs}; targets {targets}; "
            f"train/val/test = {len(self.train)}/{len(self.val)}/{len(self.test)}"
        )


def load(cfg, seed: int) -> Dataset:
    """Load the data set named by `cfg.name` and split it."""
    if cfg.name not in LOADERS:
        raise DataError(f"data.name: unknown data set {cfg.name!r}; expected one of {list(DATASETS)}")
    inputs, targets, tasks = LOADERS[cfg.name](cfg)
    target_specs = [_target_spec(name, values, tasks[name], cfg.name) for name, values in targets.items()]
    strata = next((targets[t.name] for t in target_specs if t.task == "classification"), None)
    source = f"data.path={cfg.path}" if cfg.name in ("npz", "csv") else f"data {cfg.name!r}"
    train, val, test = split(inputs, targets, cfg.val_fraction, cfg.test_fraction, seed, strata, tasks, source)
    input_specs = [Input(name, tuple(array.shape[1:])) for name, array in train.inputs.items()]
    statistics = train_statistics(train) if cfg.standardize else {}
    return Dataset(cfg.name, train, val, test, input_specs, target_specs, statistics, origin(cfg))


def _target_spec(name: str, values: np.ndarray, task: str, dataset: str) -> Target:
    if task == "regression":
        return Target(name, task)
    if values.min() < 0 or not np.all(values == np.round(values)):
        raise DataError(
            f"data {dataset!r}: classification target {name!r} must hold class indices 0..K-1; "
            f"got values from {values.min()} to {values.max()}"
        )
    return Target(name, task, num_classes=int(values.max()) + 1)


def split(
    inputs: dict,
    targets: dict,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    strata=None,
    tasks: dict | None = None,
    source: str = "data",
):
    """Seeded split into train / val / test, stratified on `strata` when given;
    bad arrays fail first, naming `source` (checks.py)."""
    from sklearn.model_selection import train_test_split

    from sweeplab.data.checks import check_arrays, check_split

    for target_name, y in targets.items():
        classification = (tasks or {}).get(target_name, "classification") == "classification"
        stratified = strata is not None and y is strata
        for input_name, x in inputs.items():
            check_arrays(
                x,
                y,
                source=source if len(inputs) + len(targets) == 2 else f"{source} ({input_name} -> {target_name})",
                classification=classification,
                val_fraction=val_fraction if stratified else None,
                test_fraction=test_fraction if stratified else None,
            )

    index = np.arange(len(next(iter(targets.values()))))
    try:
        rest, test = train_test_split(index, test_size=test_fraction, stratify=strata, random_state=seed)
        train, val = train_test_split(
            rest,
            test_size=val_fraction / (1.0 - test_fraction),
            stratify=None if strata is None else strata[rest],
            random_state=seed,
        )
    except ValueError as err:
        raise DataError(f"{source}: cannot split into train/val/test: {err}") from None
    splits = tuple(
        Split({k: v[rows] for k, v in inputs.items()}, {k: v[rows] for k, v in targets.items()})
        for rows in (train, val, test)
    )
    for name, part in zip(("train", "val", "test"), splits):
        check_split(name, next(iter(part.inputs.values())), next(iter(part.targets.values())), source)
    return splits


def train_statistics(train: Split) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each input feature's mean and std on the train split (std 1 where a feature is constant)."""
    stats = {}
    for name, x in train.inputs.items():
        std = x.std(axis=0)
        # A constant pixel stays 0 instead of being divided by 0.
        stats[name] = (x.mean(axis=0).astype("float32"), np.where(std > 0, std, 1.0).astype("float32"))
    return stats


def _scale(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x - mean) / std).astype("float32")


def _single_or_dict(arrays: dict):
    return next(iter(arrays.values())) if len(arrays) == 1 else dict(arrays)
