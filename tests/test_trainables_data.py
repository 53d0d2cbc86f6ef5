"""Datasets: fixed digits split, CIFAR-10 pickle batches, synthetic data, the cache."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from trainables import data


def write_cifar(root: Path, per_batch: int = 20, skip: str = "") -> None:
    rng = np.random.default_rng(0)
    for name in (*data.CIFAR10_TRAIN_FILES, data.CIFAR10_TEST_FILE):
        if name == skip:
            continue
        batch = {
            b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, size=per_batch)],
            b"batch_label": name.encode(),
        }
        with (root / name).open("wb") as f:
            pickle.dump(batch, f)


def test_digits_split_is_fixed_by_data_seed_and_mean_subtracted() -> None:
    a, b = data.load_digits(0), data.load_digits(0)
    assert a is b  # cached in-process
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (1197, 300, 300)
    assert a.n_features == 64 and a.n_classes == 10
    np.testing.assert_allclose(a.X_train.mean(axis=0), 0.0, atol=1e-6)
    other = data.load_digits(1)
    assert not np.array_equal(a.y_val, other.y_val)
    assert not a.X_train.flags.writeable


def test_cifar_loader_reads_python_batches(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    ds = data.load_cifar10(tmp_path, n_val=10)
    assert ds.X_train.shape == (90, 3072) and ds.X_val.shape == (10, 3072)
    assert ds.X_test.shape == (20, 3072)
    assert ds.X_train.dtype == np.float32
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0.0, atol=1e-5)
    with (tmp_path / "data_batch_1").open("rb") as f:
        first = pickle.load(f, encoding="bytes")
    # the first training image: channel-major pixels, scaled to [0, 1], minus the mean
    raw = first[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0).ravel() / 255.0
    all_train = np.concatenate(
        [
            pickle.load((tmp_path / n).open("rb"), encoding="bytes")[b"data"]
            for n in data.CIFAR10_TRAIN_FILES
        ]
    )[:90]
    mean = (all_train.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(90, -1) / 255.0).mean(0)
    np.testing.assert_allclose(ds.X_train[0], raw - mean, atol=1e-5)
    assert ds.y_train[0] == first[b"labels"][0]


def test_cifar_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar(tmp_path)
    monkeypatch.setenv(data.CIFAR10_ENV, str(tmp_path))
    assert data.load("cifar10").X_train.shape[1] == 3072


def test_cifar_missing_files_name_the_directory(tmp_path: Path) -> None:
    write_cifar(tmp_path, skip="data_batch_3")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*data_batch_3"):
        data.load_cifar10(tmp_path)


def test_cifar_without_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.CIFAR10_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="HPSEARCH_CIFAR10"):
        data.load("cifar10")


def test_synthetic_shapes_and_scale() -> None:
    ds = data.load_synthetic(rows=1000, features=12, classes=4, data_seed=3)
    assert ds.n_features == 12 and ds.n_classes == 4
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 1000
    assert 0.5 < ds.X_train.std() < 2.0


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data.load("mnist")


def test_mlp_trains_on_cifar_batches(tmp_path: Path) -> None:
    from trainables import mlp

    write_cifar(tmp_path)
    metrics = list(
        mlp.train({"data": "cifar10", "data_dir": str(tmp_path), "hidden": 10}, epochs=1, seed=0)
    )
    assert 0.0 <= metrics[0]["val_acc"] <= 1.0
