"""The training loop shared by softmax, svm and mlp: minibatch SGD-family training that
yields per-epoch metrics and stops hopeless trials by raising ``FloatingPointError``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from trainables.data import Dataset, load
from trainables.models import Net
from trainables.optim import Optimizer
from trainables.schedules import Annealer

DIVERGE_FACTOR = 3.0
INITIAL_LOSS_ROWS = 1000


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
    net: Net, data: Dataset, cfg: dict[str, Any], *, epochs: int, rng: np.random.Generator
) -> Iterator[dict[str, float]]:
    """Train ``net`` for ``epochs`` epochs, yielding the metrics of each."""
    if cfg["batch"] < 1:
        raise ValueError(f"batch: must be >= 1, got {cfg['batch']}")
    X, y = train_rows(data, cfg["train_rows"])
    X_val, y_val = data.X_val.astype(np.float64), data.y_val
    opt, annealer, reg = make_optimizer(cfg), make_annealer(cfg), cfg["reg"]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        initial = net.loss(X[:INITIAL_LOSS_ROWS], y[:INITIAL_LOSS_ROWS], reg)[0]
        for epoch in range(1, epochs + 1):
            start, lr = time.perf_counter(), annealer.lr
            metrics = _epoch(net, opt, X, y, cfg, lr, rng, epoch)
            _check_divergence(metrics["train_loss"], initial, epoch)
            metrics.update(_evaluate(net, X_val, y_val))
            annealer.end_epoch(metrics["val_acc"])
            metrics["lr"] = lr
            metrics["seconds"] = time.perf_counter() - start
            yield metrics


def _epoch(
    net: Net,
    opt: Optimizer,
    X: np.ndarray,
    y: np.ndarray,
    cfg: dict[str, Any],
    lr: float,
    rng: np.random.Generator,
    epoch: int,
) -> dict[str, float]:
    n, batch, reg = len(y), cfg["batch"], cfg["reg"]
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


def train_net(
    cfg: dict[str, Any], *, hidden: tuple[int, ...], loss_kind: str, epochs: int, seed: int
) -> Iterator[dict[str, float]]:
    """Load the data, build the net from ``cfg`` and yield from :func:`fit`."""
    rng = np.random.default_rng(seed)
    data = load_data(cfg)
    net = Net.create(
        data.n_features,
        data.n_classes,
        hidden=hidden,
        loss_kind=loss_kind,
        init=cfg["init"],
        dropout=cfg.get("dropout", 0.0),
        rng=rng,
    )
    make_optimizer(cfg)  # reject a bad update rule before the first epoch
    make_annealer(cfg)
    yield from fit(net, data, cfg, epochs=epochs, rng=rng)
