"""Sanity checks before training, from the recipe: gradient check, initial loss, overfitting.

``run_checks("mlp", {"hidden": 50, "depth": 2})`` returns one :class:`CheckResult` per row:

* ``grad <phase> <param>``: worst relative error ``|a - n| / max(|a|, |n|)`` between the
  analytic gradient ``a`` (float64) and a numerical one ``n`` over sampled entries of every
  parameter, on 3 digits examples. Phases: ``data`` (reg=0, no dropout), ``reg`` (the L2 part
  alone: loss with reg minus loss without, at reg=1 unless a larger reg is given), ``dropout``
  (reg=0, every evaluation with the same dropout seed; only when ``dropout > 0``). The
  numerical gradient is the fourth-order centered difference
  ``(-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h`` with ``h = 1e-3``, evaluated on an
  extended-precision copy of the model (long double; float64 where the platform has none).
  With the two-point formula in float64, rounding alone gives errors of 1e-7..1e-6 on tiny
  but correct gradients, which would drown the recipe's < 1e-7 band. The error counts as 0
  when both values are below the numerical gradient's resolution
  (``64 * eps * max(|f|, 1) / h``). Entries whose perturbation crosses a kink (a ReLU input
  or an SVM margin changing sign between ``x - 2h`` and ``x + 2h``) are left out and counted
  in the ``kinks <phase>`` row. Verdicts: > 1e-2 wrong, 1e-2..1e-4 suspicious, 1e-4..1e-7 ok,
  < 1e-7 good; wrong and suspicious fail. A net initialised with std 0.01 has vanishing
  gradients in its first layers and may honestly land in "ok".
* ``initial loss``: reg=0 and weights of std 1e-3 give ln(C) for softmax (2.303 for 10
  classes) and C - 1 for the SVM (9.0), within 2%; ``initial loss increase with reg``: > 0.
* ``overfit 20 examples``: reg=0, no dropout, full-batch steps with the configured update rule
  and lr reach 100% training accuracy within 300 steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainables._loop import load_data, make_optimizer
from trainables._params import parse_hidden, resolve
from trainables.data import Dataset
from trainables.models import Net

H = 1e-3
SAMPLES_PER_PARAM = 10
GRAD_EXAMPLES = 3
OVERFIT_EXAMPLES = 20
OVERFIT_STEPS = 300
SMALL_STD = 1e-3
CHECK_REG = 1.0
TRAINABLES = ("softmax", "svm", "mlp")
# The numerical gradient is evaluated in extended precision where the platform has it (80-bit
# long double on x86), float64 elsewhere; the analytic gradient is always float64.
EXTENDED = np.longdouble
GRAD_EXPECTED = "< 1e-7 (ok < 1e-4)"


@dataclass(frozen=True)
class CheckResult:
    check: str
    value: float
    expected: str
    verdict: str
    passed: bool


def verdict(rel_error: float) -> str:
    """The recipe's bands for a gradient check's relative error."""
    if not rel_error < 1e-2:  # also NaN
        return "wrong"
    if rel_error > 1e-4:
        return "suspicious"
    return "good" if rel_error < 1e-7 else "ok"


def rel_error(a: float, n: float, floor: float = 0.0) -> float:
    """``|a - n| / max(|a|, |n|)``; 0 when both are within ``floor`` of 0."""
    scale = max(abs(a), abs(n))
    return 0.0 if scale <= floor else abs(a - n) / scale


def grad_check(
    f: Callable[[], float],
    params: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    kinks: Callable[[], np.ndarray] | None = None,
    *,
    rng: np.random.Generator,
    samples: int = SAMPLES_PER_PARAM,
    h: float = H,
) -> tuple[dict[str, float], int]:
    """Worst relative error per parameter (perturbed in place) and kink-crossing entries."""
    dtype = next(iter(params.values())).dtype
    floor = 64 * float(np.finfo(dtype).eps) * max(abs(float(f())), 1.0) / h
    worst: dict[str, float] = {}
    crossed = 0
    for name, p in params.items():
        worst[name] = 0.0
        for flat in rng.choice(p.size, size=min(samples, p.size), replace=False):
            ix = np.unravel_index(flat, p.shape)
            old = p[ix]
            values, signatures = [], []
            for k in (2, 1, -1, -2):
                p[ix] = old + k * h
                values.append(f())
                signatures.append(kinks() if kinks else None)
            p[ix] = old
            if kinks and any(np.any(s != signatures[0]) for s in signatures[1:]):
                crossed += 1
                continue
            n = float((-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * h))
            worst[name] = max(worst[name], rel_error(float(grads[name][ix]), n, floor))
    return worst, crossed


def run_checks(name_or_model: str | Net, params: dict[str, Any]) -> list[CheckResult]:
    """Run all checks for ``softmax``, ``svm`` or ``mlp`` (or a :class:`Net`) with ``params``.

    ``params`` are the trainable's params (unknown keys raise ValueError) plus ``seed`` (0).
    """
    params = dict(params)
    seed = int(params.pop("seed", 0))
    cfg, net = _build(name_or_model, params, seed)
    data = load_data(cfg)
    if net.params[net.weight_names[0]].shape[0] != data.n_features:
        raise ValueError(
            f"model expects {net.params[net.weight_names[0]].shape[0]} features, "
            f"data {cfg['data']!r} has {data.n_features}"
        )
    results = _gradient_checks(net, data, cfg, seed)
    results += _initial_loss_checks(net, data, cfg, seed)
    results.append(_overfit_check(net, data, cfg, seed))
    return results


def _build(
    name_or_model: str | Net, params: dict[str, Any], seed: int
) -> tuple[dict[str, Any], Net]:
    if isinstance(name_or_model, Net):
        net = name_or_model
        from trainables.mlp import DEFAULTS

        cfg = resolve("check", params, DEFAULTS)
        return cfg, net
    if name_or_model not in TRAINABLES:
        raise ValueError(
            f"check: unknown trainable {name_or_model!r}; expected one of {', '.join(TRAINABLES)}"
        )
    module = __import__(f"trainables.{name_or_model}", fromlist=["DEFAULTS"])
    cfg = resolve(name_or_model, params, module.DEFAULTS)
    hidden = parse_hidden(cfg["hidden"], cfg["depth"]) if name_or_model == "mlp" else ()
    data = load_data(cfg)
    net = Net.create(
        data.n_features,
        data.n_classes,
        hidden=hidden,
        loss_kind="svm" if name_or_model == "svm" else "softmax",
        init=cfg["init"],
        dropout=cfg.get("dropout", 0.0),
        rng=np.random.default_rng(seed),
    )
    return cfg, net


def _extended(net: Net) -> Net:
    """A copy of ``net`` in extended precision, for the numerical side of the check."""
    params = {k: v.astype(EXTENDED) for k, v in net.params.items()}
    return type(net)(params, net.hidden, net.loss_kind, net.dropout)


def _like(net: Net, init: str | float, dropout: float, data: Dataset, seed: int) -> Net:
    return type(net).create(
        data.n_features,
        data.n_classes,
        hidden=net.hidden,
        loss_kind=net.loss_kind,
        init=init,
        dropout=dropout,
        rng=np.random.default_rng(seed),
    )


def _gradient_checks(net: Net, data: Dataset, cfg: dict[str, Any], seed: int) -> list[CheckResult]:
    X = data.X_train[:GRAD_EXAMPLES].astype(np.float64)
    y = data.y_train[:GRAD_EXAMPLES]
    rng = np.random.default_rng(seed)
    for p in net.params.values():  # non-zero biases, so their gradients are exercised too
        p += 0.01 * rng.standard_normal(p.shape)
    reg = max(cfg["reg"], CHECK_REG)
    ext = _extended(net)
    X_ext = X.astype(EXTENDED)

    def drop_rng() -> np.random.Generator | None:
        return np.random.default_rng(seed + 1) if phase == "dropout" else None

    def f() -> float:
        if phase == "reg":
            return ext.loss(X_ext, y, reg)[0] - ext.loss(X_ext, y, 0.0)[0]
        return ext.loss(X_ext, y, 0.0, drop_rng())[0]

    def kinks() -> np.ndarray:
        return ext.kink_signature(X_ext, y, drop_rng())

    phases = ["data", "reg"] + (["dropout"] if net.dropout > 0 else [])
    results = []
    for phase in phases:
        if phase == "reg":
            with_reg, without = net.loss(X, y, reg)[1], net.loss(X, y, 0.0)[1]
            grads = {k: with_reg[k] - without[k] for k in with_reg}
        else:
            grads = net.loss(X, y, 0.0, drop_rng())[1]
        kink_fn = None if phase == "reg" else kinks  # the L2 part alone has no kinks
        worst, crossed = grad_check(f, ext.params, grads, kink_fn, rng=rng)
        for name, err in worst.items():
            v = verdict(err)
            results.append(
                CheckResult(f"grad {phase} {name}", err, GRAD_EXPECTED, v, v in ("good", "ok"))
            )
        if kink_fn is not None:
            results.append(
                CheckResult(
                    f"kinks {phase}",
                    float(crossed),
                    "few (skipped)",
                    "skipped" if crossed else "none",
                    True,
                )
            )
    return results


def _initial_loss_checks(
    net: Net, data: Dataset, cfg: dict[str, Any], seed: int
) -> list[CheckResult]:
    small = _like(net, SMALL_STD, 0.0, data, seed)
    X, y = data.X_train.astype(np.float64), data.y_train
    C = data.n_classes
    expected = math.log(C) if net.loss_kind == "softmax" else C - 1.0
    label = f"ln({C}) = {expected:.3f}" if net.loss_kind == "softmax" else f"C-1 = {expected:g}"
    loss0 = small.loss(X, y, 0.0)[0]
    ok = abs(loss0 - expected) <= 0.02 * expected
    reg = cfg["reg"] or CHECK_REG
    loss_reg = small.loss(X, y, reg)[0]
    return [
        CheckResult("initial loss", loss0, f"{label} (±2%)", "good" if ok else "wrong", ok),
        CheckResult(  # the increase itself: with small weights it is tiny, but must be > 0
            f"initial loss increase with reg={reg:g}",
            loss_reg - loss0,
            "> 0",
            "good" if loss_reg > loss0 else "wrong",
            loss_reg > loss0,
        ),
    ]


def _overfit_check(net: Net, data: Dataset, cfg: dict[str, Any], seed: int) -> CheckResult:
    fresh = _like(net, cfg["init"], 0.0, data, seed)
    X = data.X_train[:OVERFIT_EXAMPLES].astype(np.float64)
    y = data.y_train[:OVERFIT_EXAMPLES]
    opt, acc, steps = make_optimizer(cfg), 0.0, 0
    with np.errstate(over="ignore", invalid="ignore"):
        while steps < OVERFIT_STEPS:
            loss, grads, fwd = fresh.loss(X, y, 0.0)
            acc = float((fwd.scores.argmax(axis=1) == y).mean())
            if acc == 1.0 or not np.isfinite(loss):
                break
            steps += 1
            for name, g in grads.items():
                fresh.params[name] += opt.update(name, g, cfg["lr"])
    passed = acc == 1.0
    return CheckResult(
        f"overfit {OVERFIT_EXAMPLES} examples (reg=0)",
        acc,
        f"1.0 within {OVERFIT_STEPS} steps",
        f"good ({steps} steps)" if passed else "wrong",
        passed,
    )
