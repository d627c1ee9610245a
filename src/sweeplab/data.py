"""Data sets: load, split train / val / test (stratified, seeded), standardize.

Every data set declares its named inputs (shapes) and targets (task, classes),
so that each model family can adapt to it or refuse it before training.
Standardization statistics come from the train split only, so nothing about
the validation or test data leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sweeplab.errors import DataError

DATASETS = ("digits", "wine_multi", "mnist", "npz", "csv")
TASKS = ("classification", "regression")
WINE_COLOR = ("color_intensity", "hue")


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

    def take(self, n: int) -> "Split":
        return Split({k: v[:n] for k, v in self.inputs.items()}, {k: v[:n] for k, v in self.targets.items()})


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    inputs: list[Input]
    targets: list[Target]

    @property
    def input_shape(self) -> tuple:
        """The shape of the first input (the only one for most data sets)."""
        return self.inputs[0].shape

    @property
    def num_classes(self) -> int:
        return self.targets[0].num_classes

    @property
    def task(self) -> str:
        return self.targets[0].task

    @property
    def metrics(self) -> list[str]:
        """Metrics Keras reports with the default heads, besides `loss`."""
        from sweeplab.heads import reported_metrics, resolve_heads

        return reported_metrics(resolve_heads(self))

    def with_one_hot(self, names: list[str]) -> "Dataset":
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
    loaders = {"digits": _load_digits, "wine_multi": _load_wine_multi, "mnist": _load_mnist, "npz": _load_npz, "csv": _load_csv}
    if cfg.name not in loaders:
        raise DataError(f"data.name: unknown data set {cfg.name!r}; expected one of {list(DATASETS)}")
    inputs, targets, tasks = loaders[cfg.name](cfg)
    target_specs = [_target_spec(name, values, tasks[name], cfg.name) for name, values in targets.items()]
    strata = next((targets[t.name] for t in target_specs if t.task == "classification"), None)
    source = f"data.path={cfg.path}" if cfg.name in ("npz", "csv") else f"data {cfg.name!r}"
    train, val, test = split(inputs, targets, cfg.val_fraction, cfg.test_fraction, seed, strata, tasks, source)
    if cfg.standardize:
        train, val, test = standardize(train, val, test)
    input_specs = [Input(name, tuple(array.shape[1:])) for name, array in train.inputs.items()]
    return Dataset(cfg.name, train, val, test, input_specs, target_specs)


def _target_spec(name: str, values: np.ndarray, task: str, dataset: str) -> Target:
    if task == "regression":
        return Target(name, task)
    if values.min() < 0 or not np.all(values == np.round(values)):
        raise DataError(
            f"data {dataset!r}: classification target {name!r} must hold class indices 0..K-1; "
            f"got values from {values.min()} to {values.max()}"
        )
    return Target(name, task, num_classes=int(values.max()) + 1)


def _load_digits(cfg):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype("float32")[..., np.newaxis]  # (n, 8, 8, 1)
    return {"image": x}, {"digit": digits.target.astype("int64")}, {"digit": "classification"}


def _load_wine_multi(cfg):
    """Wine: predict the cultivar and the alcohol content from the other chemistry.

    Color measurements are a second, auxiliary input, so the data set has two inputs.
    """
    from sklearn.datasets import load_wine

    wine = load_wine()
    names = list(wine.feature_names)
    data = wine.data.astype("float32")
    color = [names.index(c) for c in WINE_COLOR]
    chemistry = [i for i, n in enumerate(names) if n != "alcohol" and i not in color]
    inputs = {"chemistry": data[:, chemistry], "color": data[:, color]}
    targets = {"cultivar": wine.target.astype("int64"), "alcohol": data[:, names.index("alcohol")]}
    return inputs, targets, {"cultivar": "classification", "alcohol": "regression"}


def _load_mnist(cfg):
    """MNIST from a local `mnist.npz` (Keras' format); Keras downloads it only when allowed."""
    path = Path(cfg.path or "mnist.npz").expanduser()
    if not path.is_file():
        where = (
            f"put Keras' mnist.npz (keys x_train, y_train, x_test, y_test) at {str(path.resolve())!r} "
            "or set data.path=<file>"
        )
        if not cfg.download:
            raise DataError(f"data.path: MNIST file {str(path)!r} not found and data.download is false; {where}")
        try:
            import keras

            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        except Exception as err:
            raise DataError(
                f"data.path: MNIST file {str(path)!r} not found and the download failed ({type(err).__name__}); {where}"
            ) from None
        arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    else:
        arrays = _read_npz(path, ("x_train", "y_train", "x_test", "y_test"), "data.path")
    # The fixed Keras split is pooled; our own seeded, stratified split replaces it.
    x = np.concatenate([arrays["x_train"], arrays["x_test"]]).astype("float32")[..., np.newaxis] / 255.0
    y = np.concatenate([arrays["y_train"], arrays["y_test"]]).astype("int64")
    return {"image": x}, {"digit": y}, {"digit": "classification"}


def _load_npz(cfg):
    """A user's arrays: each input and target is one key of the .npz file."""
    inputs_cfg, tasks = _declared(cfg)
    keys = {name: _one_key(name, spec) for name, spec in inputs_cfg.items()}
    arrays = _read_npz(_user_file(cfg), tuple(keys.values()) + tuple(tasks), "data.path")
    inputs = {name: arrays[key].astype("float32") for name, key in keys.items()}
    targets = {name: _target_array(arrays[name], tasks[name], f"key {name!r}") for name in tasks}
    _same_length({**inputs, **targets}, cfg.path)
    return inputs, targets, tasks


def _load_csv(cfg):
    """A user's table: each input is a list of numeric columns, each target one column."""
    import csv

    inputs_cfg, tasks = _declared(cfg)
    columns = {name: [spec] if isinstance(spec, str) else list(spec) for name, spec in inputs_cfg.items()}
    path = _user_file(cfg)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise DataError(f"data.path: {str(path)!r} is empty; expected a header row and data rows")
    header, body = rows[0], rows[1:]
    wanted = [c for cols in columns.values() for c in cols] + list(tasks)
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"data.inputs/data.targets: column(s) {missing} not in {str(path)!r}; its columns are {header}")

    def numeric(column: str) -> np.ndarray:
        index = header.index(column)
        values = []
        for line, row in enumerate(body, start=2):
            try:
                values.append(float(row[index]))
            except (ValueError, IndexError):
                cell = row[index] if index < len(row) else "<missing>"
                raise DataError(
                    f"data.path: {str(path)!r} line {line}, column {column!r}: got {cell!r}; expected a number"
                ) from None
        return np.asarray(values, dtype="float32")

    inputs = {name: np.stack([numeric(c) for c in cols], axis=1) for name, cols in columns.items()}
    targets = {name: _target_array(numeric(name), tasks[name], f"column {name!r}") for name in tasks}
    return inputs, targets, tasks


def _declared(cfg) -> tuple[dict, dict]:
    if not cfg.inputs:
        raise DataError(f"data.inputs: got {cfg.inputs!r}; expected input name -> column(s)/key for data={cfg.name}")
    if not cfg.targets:
        raise DataError(f"data.targets: got {cfg.targets!r}; expected target column/key -> task for data={cfg.name}")
    return dict(cfg.inputs), dict(cfg.targets)


def _one_key(name: str, spec) -> str:
    if isinstance(spec, str):
        return spec
    if len(spec) == 1:
        return spec[0]
    raise DataError(f"data.inputs.{name}: got {list(spec)!r}; expected one array key of the .npz file")


def _user_file(cfg) -> Path:
    if not cfg.path:
        raise DataError(f"data.path: got {cfg.path!r}; expected the file to load for data={cfg.name}")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(f"data.path: file {str(path)!r} not found")
    return path


def _read_npz(path: Path, keys: tuple, key_name: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(f"{key_name}: {str(path)!r} has no array(s) {missing}; its arrays are {npz.files}")
            return {k: npz[k] for k in keys}
    except (OSError, ValueError) as err:
        raise DataError(f"{key_name}: cannot read {str(path)!r} as .npz ({err})") from None


def _target_array(values: np.ndarray, task: str, where: str) -> np.ndarray:
    if not np.issubdtype(values.dtype, np.number):
        raise DataError(f"data.targets: {where} has dtype {values.dtype}; expected numbers")
    return values.astype("int64") if task == "classification" else values.astype("float32")


def _same_length(arrays: dict, path) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"data.path: arrays of {path!r} differ in length {lengths}; expected one row per example")


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

    from sweeplab.checks import check_arrays, check_split

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


def standardize(train: Split, val: Split, test: Split) -> tuple[Split, Split, Split]:
    """Scale every input feature with the train split's mean and std."""
    stats = {}
    for name, x in train.inputs.items():
        std = x.std(axis=0)
        stats[name] = (x.mean(axis=0), np.where(std > 0, std, 1.0))  # constant pixels stay 0
    return tuple(
        Split({k: ((v - stats[k][0]) / stats[k][1]).astype("float32") for k, v in s.inputs.items()}, s.targets)
        for s in (train, val, test)
    )


def _single_or_dict(arrays: dict):
    return next(iter(arrays.values())) if len(arrays) == 1 else dict(arrays)
