"""Fully connected ReLU network with softmax loss (registered as ``mlp``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from trainables._loop import NetModel
from trainables._params import DATA_DEFAULTS, TRAIN_DEFAULTS

DEFAULTS: dict[str, Any] = {
    **DATA_DEFAULTS,
    **TRAIN_DEFAULTS,
    "lr": 1e-3,
    "reg": 1e-4,
    "update": "adam",
    "init": "he",
    "hidden": 100,
    "depth": 1,
    "dropout": 0.0,
}


MODEL = NetModel("mlp", DEFAULTS, has_hidden=True)


def train(
    params: dict[str, Any],
    *,
    epochs: int,
    seed: int,
    checkpoint_dir: str | None = None,
    restore_dir: str | None = None,
) -> Iterator[dict[str, float]]:
    """Train a fully connected ReLU net; yield metrics per epoch.

    Params (default): ``hidden`` (100: width of every hidden layer, or a list / ``"100,50"``
    of widths), ``depth`` (1: number of hidden layers when ``hidden`` is one int),
    ``dropout`` (0.0: inverted-dropout drop probability after each ReLU), ``init``
    (``"he"``; ``"xavier"`` or a weight std such as 0.01), ``lr`` (1e-3), ``reg`` (1e-4),
    ``update`` (``"adam"``), and the optimizer, annealing and data params of
    :func:`trainables.softmax.train` with the same defaults. Unknown keys raise ValueError;
    a hopeless trial raises FloatingPointError.
    """
    yield from MODEL.train(
        params, epochs=epochs, seed=seed, checkpoint_dir=checkpoint_dir, restore_dir=restore_dir
    )


predict = MODEL.predict
first_layer = MODEL.first_layer
