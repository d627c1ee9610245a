"""Loaders: each data set's arrays as its file or library holds them.

A loader returns (inputs, targets, tasks): input name -> array, target name
-> array, target name -> task. Splitting, checks and standardization are
`datasets.load`'s, so every loader gets them the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sweeplab.errors import DataError

WINE_COLOR = ("color_intensity", "hue")


def digits(cfg):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype("float32")[..., np.newaxis]  # (n, 8, 8, 1)
    return {"image": x}, {"digit": digits.target.astype("int64")}, {"digit": "classification"}


def wine_multi(cfg):
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


def mnist(cfg):
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
    # Pixel values stay 0..255, as the file holds them: the model standardizes its own inputs.
    x = np.concatenate([arrays["x_train"], arrays["x_test"]]).astype("float32")[..., np.newaxis]
    y = np.concatenate([arrays["y_train"], arrays["y_test"]]).astype("int64")
    return {"image": x}, {"digit": y}, {"digit": "classification"}


def npz(cfg):
    """A user's arrays: each input and target is one key of the .npz file."""
    inputs_cfg, tasks = _declared(cfg)
    keys = {name: _one_key(name, spec) for name, spec in inputs_cfg.items()}
    arrays = _read_npz(_user_file(cfg), tuple(keys.values()) + tuple(tasks), "data.path")
    inputs = {name: arrays[key].astype("float32") for name, key in keys.items()}
    targets = {name: _target_array(arrays[name], tasks[name], f"key {name!r}") for name in tasks}
    _same_length({**inputs, **targets}, cfg.path)
    return inputs, targets, tasks


def csv(cfg):
    """A user's table: each input is a list of numeric columns, each target one column."""
    import csv as csv_format

    inputs_cfg, tasks = _declared(cfg)
    columns = {name: [spec] if isinstance(spec, str) else list(spec) for name, spec in inputs_cfg.items()}
    path = _user_file(cfg)
    with open(path, newline="") as handle:
        rows = list(csv_format.reader(handle))
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


# data.name -> loader; conf/data/<name>.yaml configures each.
LOADERS = {"digits": digits, "wine_multi": wine_multi, "mnist": mnist, "npz": npz, "csv": csv}


def origin(cfg) -> str:
    """Where the data came from, as MLflow's dataset lineage records it: a file or a library loader."""
    libraries = {"digits": "sklearn.datasets.load_digits", "wine_multi": "sklearn.datasets.load_wine"}
    if cfg.name in libraries:
        return libraries[cfg.name]
    path = Path(cfg.path or "mnist.npz").expanduser()
    return str(path.resolve()) if path.is_file() else "keras.datasets.mnist"
