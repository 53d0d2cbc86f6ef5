"""Linear multiclass SVM, Weston–Watkins hinge loss (registered as ``svm``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from trainables._loop import NetModel
from trainables._params import DATA_DEFAULTS, TRAIN_DEFAULTS

DEFAULTS: dict[str, Any] = {
    **DATA_DEFAULTS,
    **TRAIN_DEFAULTS,
    "lr": 0.05,
    "reg": 1e-4,
    "init": 0.001,
}


MODEL = NetModel("svm", DEFAULTS, loss_kind="svm")


def train(
    params: dict[str, Any],
    *,
    epochs: int,
    seed: int,
    checkpoint_dir: str | None = None,
    restore_dir: str | None = None,
) -> Iterator[dict[str, float]]:
    """Train a linear multiclass SVM (margin 1) with minibatch updates; yield per-epoch metrics.

    Params are those of :func:`trainables.softmax.train` with defaults ``lr`` (0.05),
    ``reg`` (1e-4), ``init`` (0.001); ``val_loss`` and ``train_loss`` are hinge losses.
    Unknown keys raise ValueError; a hopeless trial raises FloatingPointError.
    """
    yield from MODEL.train(
        params, epochs=epochs, seed=seed, checkpoint_dir=checkpoint_dir, restore_dir=restore_dir
    )


predict = MODEL.predict
first_layer = MODEL.first_layer
