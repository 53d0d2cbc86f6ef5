"""The training loop shared by softmax, svm and mlp: minibatch SGD-family training that
yields per-epoch metrics and stops hopeless trials by raising ``FloatingPointError``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from trainables import checkpoint
from trainables._params import parse_hidden, resolve
from trainables.checkpoint import Average, TrainState
from trainables.data import Dataset, as_images, load
from trainables.models import Net
from trainables.optim import Optimizer
from trainables.schedules import Annealer

DIVERGE_FACTOR = 3.0
INITIAL_LOSS_ROWS = 1000
SPLITS = ("train", "val", "test")


def load_data(cfg: dict[str, Any]) -> Dataset:
    keys = ("data_dir", "data_seed", "rows", "features", "classes")
    return load(cfg["data"], **{k: cfg[k] for k in keys})


def make_optimizer(cfg: dict[str, Any]) -> Optimizer:
    keys = ("mu", "decay_rate", "beta1", "beta2", "eps")
    return Optimizer(cfg["update"], **{k: cfg[k] for k in keys})


def make_annealer(cfg: dict[str, Any]) -> Annealer:
    return Annealer(
        cfg["lr"],
        cfg["anneal"],
        k=cfg["anneal_k"],
        every=cfg["anneal_every"],
        factor=cfg["anneal_factor"],
        patience=cfg["patience"],
    )


def train_rows(data: Dataset, n: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 0:
        raise ValueError(f"train_rows: must be >= 0 (0 = all), got {n}")
    stop = n or None
    return data.X_train[:stop].astype(np.float64), data.y_train[:stop]


def fit(
    net: Net,
    data: Dataset,
    cfg: dict[str, Any],
    *,
    epochs: int,
    rng: np.random.Generator,
    state: TrainState | None = None,
    first_epoch: int = 1,
    checkpoint_dir: str | None = None,
) -> Iterator[dict[str, float]]:
    """Train ``net`` from ``first_epoch`` to ``epochs``, yielding the metrics of each.

    With ``checkpoint_dir``, each epoch's checkpoint is written there before its metrics are
    yielded.
    """
    if cfg["batch"] < 1:
        raise ValueError(f"batch: must be >= 1, got {cfg['batch']}")
    X, y = train_rows(data, cfg["train_rows"])
    X_val, y_val = data.X_val.astype(np.float64), data.y_val
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        state = state or new_state(net, cfg, rng, X, y)
        for epoch in range(first_epoch, epochs + 1):
            start, lr = time.perf_counter(), state.annealer.lr
            metrics = _epoch(net, state, X, y, cfg, lr, epoch)
            _check_divergence(metrics["train_loss"], state.initial_loss, epoch)
            metrics.update(_evaluate(net, X_val, y_val))
            if state.average is not None:
                metrics.update(_evaluate_average(net, state.average, X_val, y_val))
            state.annealer.end_epoch(metrics["val_acc"])
            metrics["lr"] = lr
            metrics["seconds"] = time.perf_counter() - start
            if checkpoint_dir is not None:
                checkpoint.save(checkpoint_dir, epoch, net, state)
            yield metrics


def new_state(
    net: Net, cfg: dict[str, Any], rng: np.random.Generator, X: np.ndarray, y: np.ndarray
) -> TrainState:
    """Fresh optimizer, annealer and (when ``avg_decay`` is on) weight average for ``net``."""
    initial = net.loss(X[:INITIAL_LOSS_ROWS], y[:INITIAL_LOSS_ROWS], cfg["reg"])[0]
    average = Average(net.params, cfg["avg_decay"]) if cfg["avg_decay"] else None
    return TrainState(make_optimizer(cfg), make_annealer(cfg), rng, average, float(initial))


def _epoch(
    net: Net,
    state: TrainState,
    X: np.ndarray,
    y: np.ndarray,
    cfg: dict[str, Any],
    lr: float,
    epoch: int,
) -> dict[str, float]:
    n, batch, reg, rng, opt = len(y), cfg["batch"], cfg["reg"], state.rng, state.optimizer
    order = rng.permutation(n)
    total_loss, correct = 0.0, 0
    diagnostics: dict[str, float] = {}
    dropout_rng = rng if net.dropout > 0 else None
    for first in range(0, n, batch):
        idx = order[first : first + batch]
        loss, grads, fwd = net.loss(X[idx], y[idx], reg, dropout_rng)
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"train_loss became {loss} at epoch {epoch}, step {first // batch + 1}"
            )
        total_loss += float(loss) * len(idx)
        correct += int((fwd.scores.argmax(axis=1) == y[idx]).sum())
        last = first + batch >= n
        for name, grad in grads.items():
            update = opt.update(name, grad, lr)
            if last and name in net.weight_names:
                diagnostics.update(_update_stats(name, net.params[name], grad, update))
            net.params[name] += update
        if state.average is not None:
            state.average.update(net.params)
    return {"train_loss": total_loss / n, "train_acc": correct / n, **diagnostics}


def _update_stats(
    name: str, param: np.ndarray, grad: np.ndarray, update: np.ndarray
) -> dict[str, float]:
    scale = float(np.linalg.norm(param))
    ratio = float(np.linalg.norm(update)) / scale if scale > 0 else float("inf")
    return {f"grad_norm/{name}": float(np.linalg.norm(grad)), f"update_ratio/{name}": ratio}


def _check_divergence(train_loss: float, initial: float, epoch: int) -> None:
    if not np.isfinite(train_loss):
        raise FloatingPointError(f"train_loss became {train_loss} at epoch {epoch}")
    if train_loss > DIVERGE_FACTOR * initial:
        raise FloatingPointError(
            f"train_loss {train_loss:.4g} > {DIVERGE_FACTOR:g}x initial {initial:.4g} "
            f"at epoch {epoch}"
        )


def _evaluate(net: Net, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    fwd = net.forward(X)
    loss = net.data_loss(fwd.scores, y)[0]
    out = {"val_loss": float(loss), "val_acc": float((fwd.scores.argmax(axis=1) == y).mean())}
    for i, z in enumerate(fwd.pre, start=1):
        h = np.maximum(z, 0.0)
        out[f"act_mean/h{i}"] = float(h.mean())
        out[f"act_std/h{i}"] = float(h.std())
    return out


def _evaluate_average(net: Net, average: Average, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Validation loss and accuracy of the averaged weights (``*_avg`` metrics)."""
    scores = replace(net, params=average.params).forward(X).scores
    loss = net.data_loss(scores, y)[0]
    return {"val_loss_avg": float(loss), "val_acc_avg": float((scores.argmax(axis=1) == y).mean())}


def build_net(
    cfg: dict[str, Any], data: Dataset, *, hidden: tuple[int, ...], loss_kind: str,
    rng: np.random.Generator,
) -> Net:  # fmt: skip
    return Net.create(
        data.n_features,
        data.n_classes,
        hidden=hidden,
        loss_kind=loss_kind,
        init=cfg["init"],
        dropout=cfg.get("dropout", 0.0),
        rng=rng,
    )


def train_net(
    cfg: dict[str, Any],
    *,
    hidden: tuple[int, ...],
    loss_kind: str,
    epochs: int,
    seed: int,
    checkpoint_dir: str | None = None,
    restore_dir: str | None = None,
) -> Iterator[dict[str, float]]:
    """Load the data, build the net from ``cfg`` and yield from :func:`fit`.

    ``restore_dir`` continues from a checkpoint: from the epoch after it, exactly as if
    training had not stopped.
    """
    rng = np.random.default_rng(seed)
    data = load_data(cfg)
    net = build_net(cfg, data, hidden=hidden, loss_kind=loss_kind, rng=rng)
    make_optimizer(cfg)  # reject a bad update rule before the first epoch
    make_annealer(cfg)
    state, first = None, 1
    if restore_dir is not None:
        X, y = train_rows(data, cfg["train_rows"])
        state = new_state(net, cfg, rng, X, y)
        first = checkpoint.restore(restore_dir, net, state) + 1
    yield from fit(net, data, cfg, epochs=epochs, rng=rng, state=state, first_epoch=first,
                   checkpoint_dir=checkpoint_dir)  # fmt: skip


def predict_net(
    cfg: dict[str, Any], *, hidden: tuple[int, ...], loss_kind: str, checkpoint_dir: str,
    split: str,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Class probabilities (softmax of the scores) and labels of a split, from a checkpoint.

    With ``avg_decay`` on, the averaged weights are evaluated in place of the last ones.
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    data = load_data(cfg)
    net = build_net(cfg, data, hidden=hidden, loss_kind=loss_kind, rng=np.random.default_rng(0))
    net.params = checkpoint.load_weights(checkpoint_dir, averaged=bool(cfg["avg_decay"]))
    X, y = getattr(data, f"X_{split}"), getattr(data, f"y_{split}")
    scores = net.forward(X.astype(np.float64)).scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True), np.asarray(y)


def first_layer_net(
    cfg: dict[str, Any], *, hidden: tuple[int, ...], loss_kind: str, checkpoint_dir: str
) -> np.ndarray:
    """The first layer's weights of a checkpoint as images ``(units, H, W[, C])``."""
    data = load_data(cfg)
    net = build_net(cfg, data, hidden=hidden, loss_kind=loss_kind, rng=np.random.default_rng(0))
    net.params = checkpoint.load_weights(checkpoint_dir)
    images = as_images(net.params[net.weight_names[0]].T, data.name)
    if images is None:
        raise ValueError(f"data {data.name!r}: its features are not images")
    return images


@dataclass(frozen=True)
class NetModel:
    """One built-in model: its params' defaults and how its net is shaped.

    Gives the three functions hpsearch looks for in a trainable's module: ``train``,
    ``predict`` and ``first_layer``.
    """

    name: str
    defaults: dict[str, Any]
    loss_kind: str = "softmax"
    has_hidden: bool = False

    def config(self, params: dict[str, Any]) -> tuple[dict[str, Any], tuple[int, ...]]:
        cfg = resolve(self.name, params, self.defaults)
        hidden = parse_hidden(cfg["hidden"], cfg["depth"]) if self.has_hidden else ()
        return cfg, hidden

    def train(
        self,
        params: dict[str, Any],
        *,
        epochs: int,
        seed: int,
        checkpoint_dir: str | None = None,
        restore_dir: str | None = None,
    ) -> Iterator[dict[str, float]]:
        cfg, hidden = self.config(params)
        return train_net(cfg, hidden=hidden, loss_kind=self.loss_kind, epochs=epochs, seed=seed,
                         checkpoint_dir=checkpoint_dir, restore_dir=restore_dir)  # fmt: skip

    def predict(
        self, params: dict[str, Any], *, checkpoint_dir: str, split: str = "val"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities ``(n, classes)`` and labels ``(n,)`` of a split from a checkpoint."""
        cfg, hidden = self.config(params)
        return predict_net(cfg, hidden=hidden, loss_kind=self.loss_kind,
                           checkpoint_dir=checkpoint_dir, split=split)  # fmt: skip

    def first_layer(self, params: dict[str, Any], *, checkpoint_dir: str) -> np.ndarray:
        """The first layer's weights of a checkpoint as images ``(units, H, W[, C])``."""
        cfg, hidden = self.config(params)
        return first_layer_net(cfg, hidden=hidden, loss_kind=self.loss_kind,
                               checkpoint_dir=checkpoint_dir)  # fmt: skip
