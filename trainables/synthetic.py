"""A trainable with a known optimum and no real training (registered as ``synthetic``).

Validation accuracy follows a learning curve whose final height peaks at known values of
the params, so tests and benchmarks can compute regret in microseconds per epoch:

    quality  = exp(-0.5 * sum_d ((log10(p_d) - opt_d) / scale_d) ** 2) * choice_factor
    val_acc  = floor + (peak - floor) * quality * (1 - exp(-epoch / tau)) + noise

Numeric dimensions are ``lr``, ``reg``, ``hidden``, ``batch`` (log10 scale) and ``dropout``
(linear scale); each counts only when it is given. The default optimum of ``reg`` is
``10**1.5``, *outside* the usual ``loguniform(1e-5, 1e1)`` range, so a search must widen that
range to find it. ``update`` is a choice: ``adam`` and ``nesterov`` are best. The noise
comes from ``numpy.random.default_rng(seed)``; without noise the curve rises with every epoch,
and the ranking of configurations is the same at every epoch (coarse stages rank like fine).
``lr > 10**diverge_lr`` makes the trial diverge at epoch 2 (FloatingPointError).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from trainables._params import resolve

LOG_DIMS = {"lr": -2.5, "reg": 1.5, "hidden": 2.3, "batch": 1.8}
LINEAR_DIMS = {"dropout": 0.3}
CHOICE_FACTOR = {
    "adam": 1.0,
    "nesterov": 1.0,
    "momentum": 0.97,
    "rmsprop": 0.97,
    "adagrad": 0.9,
    "sgd": 0.9,
}
FLOOR = 0.1

DEFAULTS: dict[str, Any] = {
    **{d: math.nan for d in (*LOG_DIMS, *LINEAR_DIMS)},
    "update": "",
    **{f"opt_{d}": v for d, v in {**LOG_DIMS, **LINEAR_DIMS}.items()},
    **{f"scale_{d}": 1.0 for d in LOG_DIMS},
    "scale_dropout": 0.3,
    "peak": 0.95,
    "tau": 3.0,
    "noise": 0.005,
    "diverge_lr": 0.5,
    "sleep": 0.0,
}


def quality(params: Mapping[str, Any]) -> float:
    """Final-quality factor in (0, 1]; 1 exactly at the optimum. ``params`` as for train."""
    cfg = resolve("synthetic", params, DEFAULTS)
    total = 0.0
    for dim in (*LOG_DIMS, *LINEAR_DIMS):
        value = cfg[dim]
        if math.isnan(value):
            continue
        if dim in LOG_DIMS:
            if value <= 0:
                raise ValueError(f"synthetic: param {dim!r} must be > 0, got {value}")
            value = math.log10(value)
        total += ((value - cfg[f"opt_{dim}"]) / cfg[f"scale_{dim}"]) ** 2
    factor = 1.0
    if cfg["update"]:
        if cfg["update"] not in CHOICE_FACTOR:
            raise ValueError(
                f"synthetic: update must be one of {', '.join(CHOICE_FACTOR)}, "
                f"got {cfg['update']!r}"
            )
        factor = CHOICE_FACTOR[cfg["update"]]
    return math.exp(-0.5 * total) * factor


def expected_val_acc(params: Mapping[str, Any], epoch: int) -> float:
    """Noise-free validation accuracy after ``epoch`` epochs."""
    cfg = resolve("synthetic", params, DEFAULTS)
    progress = 1.0 - math.exp(-epoch / cfg["tau"])
    return float(FLOOR + (cfg["peak"] - FLOOR) * quality(params) * progress)


def optimum(
    params: Mapping[str, Any] | None = None, *, epochs: int
) -> tuple[dict[str, Any], float]:
    """The best param values and the best noise-free ``val_acc`` reachable in ``epochs``.

    ``params`` may override ``opt_*``, ``peak`` and ``tau``; regret of a trial is
    ``optimum(...)[1] - its val_acc``.
    """
    cfg = resolve("synthetic", params or {}, DEFAULTS)
    best: dict[str, Any] = {d: 10.0 ** cfg[f"opt_{d}"] for d in LOG_DIMS}
    best.update({d: cfg[f"opt_{d}"] for d in LINEAR_DIMS})
    best["update"] = "adam"
    progress = 1.0 - math.exp(-epochs / cfg["tau"])
    return best, FLOOR + (cfg["peak"] - FLOOR) * progress


def train(params: dict[str, Any], *, epochs: int, seed: int) -> Iterator[dict[str, float]]:
    """Yield ``val_acc``, ``val_loss``, ``train_loss``, ``train_acc`` per epoch from the curve.

    Params (default): ``lr``, ``reg``, ``hidden``, ``batch``, ``dropout`` (absent = not a
    dimension), ``update`` (absent), ``opt_<dim>`` optimum location, log10 for log dims
    (lr -2.5, reg 1.5, hidden 2.3, batch 1.8; dropout 0.3), ``scale_<dim>`` width in decades
    (1.0; dropout 0.3), ``peak`` (0.95), ``tau`` (3.0 epochs), ``noise`` (0.005 std),
    ``diverge_lr`` (0.5, log10), ``sleep`` (0.0 seconds per epoch, to mimic real work).
    Unknown keys raise ValueError.
    """
    cfg = resolve("synthetic", params, DEFAULTS)
    rng = np.random.default_rng(seed)
    q, span = quality(params), cfg["peak"] - FLOOR
    diverges = not math.isnan(cfg["lr"]) and cfg["lr"] > 10.0 ** cfg["diverge_lr"]
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        if cfg["sleep"]:
            time.sleep(cfg["sleep"])
        if diverges and epoch >= 2:
            raise FloatingPointError(
                f"train_loss 9.9 > 3x initial 2.303 at epoch {epoch} (lr {cfg['lr']:.3g} > "
                f"10**{cfg['diverge_lr']:g})"
            )
        progress = 0.0 if diverges else 1.0 - math.exp(-epoch / cfg["tau"])
        acc = FLOOR + span * q * progress
        val_acc = float(np.clip(acc + cfg["noise"] * rng.standard_normal(), 0.0, 1.0))
        train_acc = min(1.0, acc * 1.02)
        yield {
            "train_loss": -math.log(max(train_acc, 1e-6)),
            "train_acc": train_acc,
            "val_loss": -math.log(max(val_acc, 1e-6)),
            "val_acc": val_acc,
            "seconds": time.perf_counter() - start,
        }
