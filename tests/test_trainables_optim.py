"""Update rules and annealing schedules against hand-computed steps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainables.optim import Optimizer
from trainables.schedules import Annealer

DX1 = np.array([0.5, -2.0])
DX2 = np.array([1.0, 4.0])
LR = 0.1


def two_steps(rule: str, **kw: float) -> tuple[np.ndarray, np.ndarray]:
    opt = Optimizer(rule, **kw)
    return opt.update("W", DX1, LR), opt.update("W", DX2, LR)


def test_sgd() -> None:
    u1, u2 = two_steps("sgd")
    np.testing.assert_allclose(u1, [-0.05, 0.2])
    np.testing.assert_allclose(u2, [-0.1, -0.4])


def test_momentum() -> None:
    u1, u2 = two_steps("momentum", mu=0.5)
    # v1 = -0.1 * dx1 = [-0.05, 0.2]; v2 = 0.5 * v1 - 0.1 * dx2 = [-0.125, -0.3]
    np.testing.assert_allclose(u1, [-0.05, 0.2])
    np.testing.assert_allclose(u2, [-0.125, -0.3])


def test_nesterov_rewritten_form() -> None:
    u1, u2 = two_steps("nesterov", mu=0.5)
    # step 1: v_prev = 0, v = [-0.05, 0.2], update = 1.5 * v
    np.testing.assert_allclose(u1, [-0.075, 0.3])
    # step 2: v_prev = [-0.05, 0.2], v = [-0.125, -0.3]; update = -0.5 v_prev + 1.5 v
    np.testing.assert_allclose(u2, [0.025 - 0.1875, -0.1 - 0.45])


def test_adagrad() -> None:
    u1, u2 = two_steps("adagrad", eps=0.0)
    np.testing.assert_allclose(u1, [-0.1, 0.1])
    np.testing.assert_allclose(u2, [-0.1 / math.sqrt(1.25), -0.4 / math.sqrt(20.0)])


def test_rmsprop() -> None:
    u1, u2 = two_steps("rmsprop", decay_rate=0.9, eps=0.0)
    c1 = 0.1 * DX1**2
    np.testing.assert_allclose(u1, -LR * DX1 / np.sqrt(c1))
    c2 = 0.9 * c1 + 0.1 * DX2**2
    np.testing.assert_allclose(u2, -LR * DX2 / np.sqrt(c2))


def test_adam_with_bias_correction() -> None:
    u1, u2 = two_steps("adam", beta1=0.9, beta2=0.999, eps=0.0)
    # after bias correction the first step is -lr * sign(dx)
    np.testing.assert_allclose(u1, [-0.1, 0.1])
    m = 0.9 * 0.1 * DX1 + 0.1 * DX2
    v = 0.999 * 0.001 * DX1**2 + 0.001 * DX2**2
    expected = -LR * (m / (1 - 0.9**2)) / np.sqrt(v / (1 - 0.999**2))
    np.testing.assert_allclose(u2, expected)


def test_state_is_per_parameter() -> None:
    opt = Optimizer("momentum", mu=0.5)
    opt.update("W1", DX1, LR)
    np.testing.assert_allclose(opt.update("W2", DX1, LR), -LR * DX1)


def test_unknown_rule_is_named() -> None:
    with pytest.raises(ValueError, match="unknown rule 'adamw'"):
        Optimizer("adamw")


def lrs(annealer: Annealer, epochs: int, val_accs: list[float] | None = None) -> list[float]:
    out = []
    for epoch in range(epochs):
        out.append(annealer.lr)
        annealer.end_epoch(val_accs[epoch] if val_accs else 0.0)
    return out


def test_step_schedule_halves_every_k_epochs() -> None:
    got = lrs(Annealer(1.0, "step", every=2, factor=0.5), 6)
    assert got == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_exp_and_inv_t_schedules() -> None:
    exp = lrs(Annealer(0.2, "exp", k=0.5), 3)
    np.testing.assert_allclose(exp, [0.2, 0.2 * math.exp(-0.5), 0.2 * math.exp(-1.0)])
    inv = lrs(Annealer(0.2, "inv_t", k=0.5), 3)
    np.testing.assert_allclose(inv, [0.2, 0.2 / 1.5, 0.2 / 2.0])


def test_plateau_halves_when_validation_stops_improving() -> None:
    accs = [0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.7]
    got = lrs(Annealer(1.0, "plateau", patience=1, factor=0.5), 7, accs)
    assert got == [1.0, 1.0, 1.0, 0.5, 0.25, 0.25, 0.125]


def test_plateau_patience() -> None:
    got = lrs(Annealer(1.0, "plateau", patience=2), 5, [0.5, 0.4, 0.4, 0.4, 0.4])
    assert got == [1.0, 1.0, 1.0, 0.5, 0.5]


def test_unknown_schedule_is_named() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        Annealer(1.0, "cosine")
