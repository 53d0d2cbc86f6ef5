"""Linear softmax classifier (registered as ``softmax``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from trainables._loop import NetModel
from trainables._params import DATA_DEFAULTS, TRAIN_DEFAULTS

DEFAULTS: dict[str, Any] = {
    **DATA_DEFAULTS,
    **TRAIN_DEFAULTS,
    "lr": 0.5,
    "reg": 1e-4,
    "init": 0.001,
}


MODEL = NetModel("softmax", DEFAULTS)


def train(
    params: dict[str, Any],
    *,
    epochs: int,
    seed: int,
    checkpoint_dir: str | None = None,
    restore_dir: str | None = None,
) -> Iterator[dict[str, float]]:
    """Train a linear softmax classifier with minibatch updates; yield metrics per epoch.

    Params (default): ``lr`` (0.5), ``reg`` (1e-4, L2 ``0.5*reg*sum(W**2)``), ``init``
    (0.001: weight std, or ``"he"``/``"xavier"``), ``batch`` (100), ``update`` (``"sgd"``;
    also momentum, nesterov, adagrad, rmsprop, adam), ``mu`` (0.9), ``decay_rate`` (0.99),
    ``beta1`` (0.9), ``beta2`` (0.999), ``eps`` (1e-8), ``anneal`` (``"none"``; step, exp,
    inv_t, plateau), ``anneal_k`` (0.1), ``anneal_every`` (5), ``anneal_factor`` (0.5),
    ``patience`` (1), ``avg_decay`` (0.0: off; e.g. 0.999 keeps a running average of
    the weights, reported as ``val_acc_avg``/``val_loss_avg`` and used by ``predict``),
    ``data`` (``"digits"``; cifar10, synthetic), ``data_dir`` (""), ``data_seed`` (0),
    ``rows`` (20000), ``features`` (100), ``classes`` (10),
    ``train_rows`` (0 = all). Unknown keys raise ValueError.

    Raises FloatingPointError when the loss becomes non-finite or exceeds 3x its initial value.
    """
    yield from MODEL.train(
        params, epochs=epochs, seed=seed, checkpoint_dir=checkpoint_dir, restore_dir=restore_dir
    )


predict = MODEL.predict
first_layer = MODEL.first_layer
