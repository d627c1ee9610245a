"""Data sets: declared inputs and targets, splits, standardization, user files, errors."""

from __future__ import annotations

import numpy as np
import pytest

from sweeplab.config.schema import DataConfig
from sweeplab.data import datasets as data
from sweeplab.errors import DataError


def data_config(name, **overrides):
    """The data group's config with the schema's defaults, as validation makes it."""
    return DataConfig(name=name, **overrides)


def test_digits_is_one_image_input_and_one_class_target():
    dataset = data.load(data_config("digits"), seed=0)
    assert dataset.inputs == [data.Input("image", (8, 8, 1))]
    assert dataset.targets == [data.Target("digit", "classification", 10)]
    assert dataset.train.x.shape[1:] == (8, 8, 1)
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 1797


def test_wine_multi_has_two_inputs_and_two_heads_without_alcohol_as_input():
    dataset = data.load(data_config("wine_multi"), seed=0)
    assert [(i.name, i.shape) for i in dataset.inputs] == [("chemistry", (10,)), ("color", (2,))]
    assert dataset.targets == [data.Target("cultivar", "classification", 3), data.Target("alcohol", "regression")]
    assert set(dataset.train.x) == {"chemistry", "color"}
    assert set(dataset.train.y) == {"cultivar", "alcohol"}
    # Alcohol stays in % vol. (a target, not standardized).
    assert 10 < dataset.train.y["alcohol"].mean() < 16


def test_splits_hold_raw_inputs_and_standardization_uses_train_statistics_only():
    dataset = data.load(data_config("wine_multi"), seed=0)
    raw = dataset.train.inputs["chemistry"]
    # The splits keep the values the data file holds (magnesium is in mg/l, ~100).
    assert raw.max() > 50
    mean, std = dataset.standardization["chemistry"]
    np.testing.assert_allclose(mean, raw.mean(axis=0), rtol=1e-5)
    train = dataset.standardized(dataset.train).inputs["chemistry"]
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-3)
    # Val is scaled with train's statistics, so it is not exactly centred.
    assert np.abs(dataset.standardized(dataset.val).inputs["chemistry"].mean(axis=0)).max() > 1e-3
    assert data.load(data_config("wine_multi", standardize=False), seed=0).standardization == {}


def test_the_model_standardizes_raw_inputs_itself():
    """The first layer of every family does what `standardized` does, so logged models take raw inputs."""
    import keras

    from sweeplab.models.blocks import model_inputs

    dataset = data.load(data_config("digits"), seed=0)
    inputs, tensors = model_inputs(dataset)
    scaled = keras.Model(inputs["image"], tensors["image"])(dataset.test.x)
    expected = dataset.standardized(dataset.test).x
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scaled), expected, atol=1e-4)
    # A pixel that is constant on train (std 1 stands in for 0) does not blow up on test.
    assert np.isfinite(expected).all()


def test_splits_are_stratified_and_seeded():
    first = data.load(data_config("digits"), seed=3)
    again = data.load(data_config("digits"), seed=3)
    np.testing.assert_array_equal(first.test.y, again.test.y)
    counts = np.bincount(first.test.y)
    assert counts.max() - counts.min() <= 2


def test_one_hot_copy_encodes_only_named_targets():
    dataset = data.load(data_config("wine_multi"), seed=0).with_one_hot(["cultivar"])
    assert dataset.train.y["cultivar"].shape[1:] == (3,)
    assert dataset.train.y["alcohol"].ndim == 1


def write_mnist(path, per_class=10):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), per_class).astype("uint8")
    x = rng.integers(0, 256, size=(len(y), 28, 28), dtype="uint8")
    half = len(y) // 2
    np.savez(path, x_train=x[:half], y_train=y[:half], x_test=x[half:], y_test=y[half:])


def test_mnist_loads_from_a_local_npz(tmp_path):
    path = tmp_path / "mnist.npz"
    write_mnist(path)
    dataset = data.load(data_config("mnist", path=str(path), val_fraction=0.1, test_fraction=0.1), seed=0)
    assert dataset.inputs[0].shape == (28, 28, 1)
    assert dataset.num_classes == 10
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 100


def test_mnist_without_file_or_download_names_where_to_put_it(tmp_path):
    missing = tmp_path / "nowhere" / "mnist.npz"
    with pytest.raises(DataError) as err:
        data.load(data_config("mnist", path=str(missing), download=False), seed=0)
    assert "data.path" in str(err.value)
    assert str(missing) in str(err.value)
    assert "mnist.npz" in str(err.value)


def test_npz_loads_declared_inputs_and_targets(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "arrays.npz"
    np.savez(path, pixels=rng.random((60, 4, 4, 1)), label=np.arange(60) % 3, size=rng.random(60))
    cfg = data_config(
        "npz", path=str(path), inputs={"image": "pixels"}, targets={"label": "classification", "size": "regression"}
    )
    dataset = data.load(cfg, seed=0)
    assert dataset.inputs == [data.Input("image", (4, 4, 1))]
    assert dataset.targets == [data.Target("label", "classification", 3), data.Target("size", "regression")]


def test_npz_missing_key_is_named(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, pixels=np.zeros((10, 2)), label=np.zeros(10))
    cfg = data_config("npz", path=str(path), inputs={"image": "pixel"}, targets={"label": "classification"})
    with pytest.raises(DataError, match="pixel"):
        data.load(cfg, seed=0)


def write_csv(path, rows=40, bad_cell=None):
    lines = ["a,b,c,kind,weight"]
    for i in range(rows):
        lines.append(f"{i * 0.5},{i % 7},{i % 3 * 1.5},{i % 2},{i * 2.0}")
    if bad_cell:
        lines[5] = lines[5].replace(f",{4 % 7},", f",{bad_cell},", 1)
    path.write_text("\n".join(lines) + "\n")


def test_csv_loads_named_inputs_and_targets(tmp_path):
    path = tmp_path / "table.csv"
    write_csv(path)
    cfg = data_config(
        "csv",
        path=str(path),
        inputs={"main": ["a", "b"], "extra": ["c"]},
        targets={"kind": "classification", "weight": "regression"},
    )
    dataset = data.load(cfg, seed=0)
    assert [(i.name, i.shape) for i in dataset.inputs] == [("main", (2,)), ("extra", (1,))]
    assert dataset.targets == [data.Target("kind", "classification", 2), data.Target("weight", "regression")]


def test_csv_missing_column_is_named(tmp_path):
    path = tmp_path / "table.csv"
    write_csv(path)
    cfg = data_config("csv", path=str(path), inputs={"main": ["a", "nope"]}, targets={"kind": "classification"})
    with pytest.raises(DataError, match=r"\['nope'\]"):
        data.load(cfg, seed=0)


def test_csv_non_numeric_cell_names_line_column_and_value(tmp_path):
    path = tmp_path / "table.csv"
    write_csv(path, bad_cell="oops")
    cfg = data_config("csv", path=str(path), inputs={"main": ["a", "b"]}, targets={"kind": "classification"})
    with pytest.raises(DataError) as err:
        data.load(cfg, seed=0)
    assert "line 6" in str(err.value) and "'b'" in str(err.value) and "'oops'" in str(err.value)
