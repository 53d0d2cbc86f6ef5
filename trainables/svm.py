"""Linear multiclass SVM, Weston–Watkins hinge loss (registered as ``svm``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from trainables._loop import train_net
from trainables._params import DATA_DEFAULTS, TRAIN_DEFAULTS, resolve

DEFAULTS: dict[str, Any] = {
    **DATA_DEFAULTS,
    **TRAIN_DEFAULTS,
    "lr": 0.05,
    "reg": 1e-4,
    "init": 0.001,
}


def train(params: dict[str, Any], *, epochs: int, seed: int) -> Iterator[dict[str, float]]:
    """Train a linear multiclass SVM (margin 1) with minibatch updates; yield per-epoch metrics.

    Params are those of :func:`trainables.softmax.train` with defaults ``lr`` (0.05),
    ``reg`` (1e-4), ``init`` (0.001); ``val_loss`` and ``train_loss`` are hinge losses.
    Unknown keys raise ValueError; a hopeless trial raises FloatingPointError.
    """
    cfg = resolve("svm", params, DEFAULTS)
    yield from train_net(cfg, hidden=(), loss_kind="svm", epochs=epochs, seed=seed)
