"""Validation of the ``params`` dict every trainable receives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DATA_DEFAULTS: dict[str, Any] = {
    "data": "digits",  # digits | cifar10 | synthetic
    "data_dir": "",  # CIFAR-10 directory (else $HPSEARCH_CIFAR10)
    "data_seed": 0,  # fixes the train/val/test split, independent of the trial seed
    "rows": 20000,  # synthetic data only
    "features": 100,  # synthetic data only
    "classes": 10,  # synthetic data only
    "train_rows": 0,  # use only the first N training rows (0 = all)
}

TRAIN_DEFAULTS: dict[str, Any] = {
    "batch": 100,
    "update": "sgd",
    "mu": 0.9,
    "decay_rate": 0.99,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "anneal": "none",  # none | step | exp | inv_t | plateau
    "anneal_k": 0.1,  # exp and inv_t
    "anneal_every": 5,  # step
    "anneal_factor": 0.5,  # step and plateau
    "patience": 1,  # plateau
    "avg_decay": 0.0,  # running average of the weights per step (e.g. 0.999); 0 = off
}

UNTYPED = frozenset({"init", "hidden"})


def resolve(where: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``params``; unknown keys and wrong types raise ValueError."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"{where}: unknown param {unknown[0]!r}; accepted params: {', '.join(sorted(defaults))}"
        )
    out = dict(defaults)
    for key, value in params.items():
        out[key] = value if key in UNTYPED else _coerce(where, key, value, defaults[key])
    return out


def _coerce(where: str, key: str, value: Any, default: Any) -> Any:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool) or isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, int):
        if number and float(value).is_integer():
            return int(value)
    elif isinstance(default, float):
        if number:
            return float(value)
    kind = type(default).__name__
    raise ValueError(f"{where}: param {key!r} must be {kind}, got {value!r}")


def parse_hidden(value: Any, depth: int) -> tuple[int, ...]:
    """``hidden`` as an int (repeated ``depth`` times), a list, or ``"100,50"``."""
    if isinstance(value, bool):
        raise ValueError(f"hidden: expected an int, a list of ints or '100,50', got {value!r}")
    if isinstance(value, (int, float)) and float(value).is_integer():
        if depth < 1:
            raise ValueError(f"depth: number of hidden layers must be >= 1, got {depth}")
        return (int(value),) * depth
    try:
        items = value.split(",") if isinstance(value, str) else list(value)
        sizes = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        sizes = ()
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"hidden: expected an int, a list of ints or '100,50', got {value!r}")
    return sizes
