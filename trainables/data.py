"""Datasets for the reference trainables: digits, CIFAR-10, synthetic.

Every loader returns a :class:`Dataset` with one fixed train/validation/test split (no
k-fold). The split depends only on ``data_seed``, never on a trial's seed, so all trials of a
study are evaluated on the same validation set. Features are flattened, pixel intensities
are scaled to [0, 1], and the *training* mean is subtracted from every split.

Loaded datasets are cached in-process (keyed by the loader's arguments): a worker that runs
many short trials loads each dataset once. Arrays are stored as float32 and marked
read-only, since the cache shares them between trials.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CIFAR10_ENV = "HPSEARCH_CIFAR10"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
DATASETS = ("digits", "cifar10", "synthetic")

_CACHE: dict[tuple[Any, ...], Dataset] = {}
Split = tuple[Any, Any]  # (features, labels) of one split, before preprocessing


@dataclass(frozen=True)
class Dataset:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max()) + 1)


def as_images(rows: np.ndarray, name: str) -> np.ndarray | None:
    """Flat rows of a data set's features as images ``(n, H, W[, C])``; None if not images."""
    if name == "digits":
        return rows.reshape(len(rows), 8, 8)
    if name == "cifar10":  # stored channel-first, as the python batches are
        return rows.reshape(len(rows), 3, 32, 32).transpose(0, 2, 3, 1)
    return None


def preprocess(
    name: str, train: Split, val: Split, test: Split, scale: float | None = None
) -> Dataset:
    """Flatten, divide by ``scale``, subtract the training mean, freeze as float32.

    ``scale=None`` divides by the training set's overall standard deviation (one number).
    """
    xs = [np.asarray(x, dtype=np.float64).reshape(len(x), -1) for x, _ in (train, val, test)]
    scale = float(xs[0].std()) if scale is None else scale
    xs = [x / scale for x in xs]
    mean = xs[0].mean(axis=0)
    arrays = []
    for x, (_, y) in zip(xs, (train, val, test), strict=True):
        x32 = (x - mean).astype(np.float32)
        y64 = np.asarray(y, dtype=np.int64)
        x32.flags.writeable = y64.flags.writeable = False
        arrays += [x32, y64]
    return Dataset(name, *arrays)


def _split(
    X: np.ndarray, y: np.ndarray, n_val: int, n_test: int, seed: int
) -> tuple[Split, Split, Split]:
    from sklearn.model_selection import train_test_split

    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=n_test, random_state=seed, stratify=y
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=n_val, random_state=seed, stratify=y_rest
    )
    return (X_train, y_train), (X_val, y_val), (X_test, y_test)


def load_digits(data_seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes): 1197 / 300 / 300."""
    key = ("digits", data_seed)
    if key not in _CACHE:
        from sklearn.datasets import load_digits as sk_digits

        bunch = sk_digits()
        parts = _split(bunch.data, bunch.target, 300, 300, data_seed)
        _CACHE[key] = preprocess("digits", *parts, scale=16.0)
    return _CACHE[key]


def load_synthetic(
    rows: int = 20000, features: int = 100, classes: int = 10, data_seed: int = 0
) -> Dataset:
    """``make_classification`` data (harder and larger than digits), split 80 / 10 / 10.

    Divided by the training standard deviation (one scalar) so features have unit scale.
    """
    key = ("synthetic", rows, features, classes, data_seed)
    if key not in _CACHE:
        from sklearn.datasets import make_classification

        X, y = make_classification(
            n_samples=rows,
            n_features=features,
            n_informative=max(2, features // 2),
            n_redundant=features // 10,
            n_classes=classes,
            n_clusters_per_class=2,
            class_sep=1.5,
            random_state=data_seed,
        )
        n_hold = max(classes, rows // 10)
        _CACHE[key] = preprocess("synthetic", *_split(X, y, n_hold, n_hold, data_seed))
    return _CACHE[key]


def cifar10_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """The CIFAR-10 directory: the argument, else ``$HPSEARCH_CIFAR10``."""
    chosen = directory or os.environ.get(CIFAR10_ENV, "")
    if not chosen:
        raise FileNotFoundError(
            f"CIFAR-10: no directory given; pass data_dir=... or set {CIFAR10_ENV} to the "
            "directory holding data_batch_1..5 and test_batch (the python version)"
        )
    return Path(chosen).expanduser().resolve()


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open("rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data.transpose(0, 2, 3, 1), np.asarray(batch[b"labels"], dtype=np.int64)


def load_cifar10(
    directory: str | os.PathLike[str] | None = None, n_val: int | None = None
) -> Dataset:
    """CIFAR-10 python-pickle batches; the last ``n_val`` training images validate.

    ``n_val`` defaults to 1000 (49000 / 1000 / 10000), or a tenth of smaller batch files.
    """
    root = cifar10_dir(directory)
    key = ("cifar10", str(root), n_val)
    if key in _CACHE:
        return _CACHE[key]
    names = (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10: {root} lacks {', '.join(missing)}; expected the python-version "
            f"batches data_batch_1..5 and test_batch there (set data_dir or {CIFAR10_ENV})"
        )
    parts = [_read_batch(root / n) for n in CIFAR10_TRAIN_FILES]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    n_val = min(1000, len(y) // 10) if n_val is None else n_val
    if not 0 < n_val < len(y):
        raise ValueError(f"CIFAR-10: n_val must be in (0, {len(y)}), got {n_val}")
    test = _read_batch(root / CIFAR10_TEST_FILE)
    train, val = (X[:-n_val], y[:-n_val]), (X[-n_val:], y[-n_val:])
    _CACHE[key] = preprocess("cifar10", train, val, test, scale=255.0)
    return _CACHE[key]


def load(
    data: str,
    *,
    data_dir: str = "",
    data_seed: int = 0,
    rows: int = 20000,
    features: int = 100,
    classes: int = 10,
) -> Dataset:
    """Dispatch on the ``data`` param of the trainables."""
    if data == "digits":
        return load_digits(data_seed)
    if data == "synthetic":
        return load_synthetic(rows, features, classes, data_seed)
    if data == "cifar10":
        return load_cifar10(data_dir or None)
    raise ValueError(f"data: unknown dataset {data!r}; expected one of {', '.join(DATASETS)}")


def clear_cache() -> None:
    _CACHE.clear()
