"""Sanity checks from the recipe: gradient check, initial loss, overfitting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainables.checks import grad_check, rel_error, run_checks, verdict
from trainables.models import Net, Params


def rows(results: list, prefix: str) -> list:
    return [r for r in results if r.check.startswith(prefix)]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("softmax", {}),
        ("svm", {}),
        ("mlp", {}),
        ("mlp", {"hidden": "40,30", "init": "xavier"}),
        ("mlp", {"hidden": 40, "depth": 2, "dropout": 0.5}),
    ],
)
def test_gradient_checks_are_good(name: str, params: dict) -> None:
    results = run_checks(name, params)
    grads = rows(results, "grad ")
    weights = {r.check.split()[-1] for r in grads if r.check.split()[-1].startswith("W")}
    assert len(weights) == (
        1
        if name != "mlp"
        else 1 + len(str(params.get("hidden", 1)).split(",")) + params.get("depth", 1) - 1
    )
    for r in grads:
        assert r.value < 1e-7, r
        assert r.verdict == "good"
    phases = {r.check.split()[1] for r in grads}
    assert phases == ({"data", "reg", "dropout"} if params.get("dropout") else {"data", "reg"})
    assert all(r.passed for r in results), [r for r in results if not r.passed]


class WrongGradNet(Net):
    """A planted bug: the L2 gradient is twice too large (a classic 0.5 mix-up)."""

    def loss(self, X, y, reg, rng=None):  # type: ignore[no-untyped-def]
        loss, grads, fwd = super().loss(X, y, reg, rng)
        for name in self.weight_names:
            grads[name] = grads[name] + reg * self.params[name]
        return loss, grads, fwd


class WrongBackpropNet(Net):
    """A planted bug: ReLU gradient forgotten in the first layer (dW1 off)."""

    def loss(self, X, y, reg, rng=None):  # type: ignore[no-untyped-def]
        loss, grads, fwd = super().loss(X, y, reg, rng)
        grads["W1"] = grads["W1"] * 1.01
        return loss, grads, fwd


def planted(cls: type[Net]) -> Net:
    return cls.create(64, 10, hidden=(20,), rng=np.random.default_rng(0))


def test_planted_wrong_reg_gradient_fails() -> None:
    results = run_checks(planted(WrongGradNet), {})
    bad = {r.check for r in results if not r.passed}
    assert {"grad reg W1", "grad reg W2"} <= bad
    assert all(r.passed for r in rows(results, "grad data"))
    assert next(r for r in results if r.check == "grad reg W1").verdict == "wrong"


def test_planted_small_error_is_not_good() -> None:
    results = run_checks(planted(WrongBackpropNet), {})
    w1 = next(r for r in results if r.check == "grad data W1")
    assert w1.value > 1e-3 and w1.verdict in ("suspicious", "wrong")


def test_grad_check_on_a_known_function() -> None:
    params: Params = {"x": np.array([1.0, -2.0, 3.0])}

    def f() -> float:
        return float(np.sum(params["x"] ** 3))

    worst, _ = grad_check(f, params, {"x": 3 * params["x"] ** 2}, rng=np.random.default_rng(0))
    assert worst["x"] < 1e-10
    worst, _ = grad_check(
        f, params, {"x": 3 * params["x"] ** 2 + 0.1}, rng=np.random.default_rng(0)
    )
    assert worst["x"] > 1e-3


def test_kinks_are_counted_and_skipped() -> None:
    net = Net.create(64, 10, hidden=(200,), init=0.01, rng=np.random.default_rng(0))
    results = run_checks(net, {"seed": 3})
    kinks = next(r for r in results if r.check == "kinks data")
    assert kinks.value >= 1 and kinks.verdict == "skipped"


def test_rel_error_and_verdict_bands() -> None:
    assert rel_error(0.0, 0.0) == 0.0
    assert rel_error(1.0, 1.0 + 1e-9) == pytest.approx(1e-9, rel=1e-3)
    assert rel_error(2.0, -2.0) == 2.0
    assert [verdict(v) for v in (0.5, 1e-3, 1e-5, 1e-9, math.nan)] == [
        "wrong",
        "suspicious",
        "ok",
        "good",
        "wrong",
    ]


@pytest.mark.parametrize(
    ("name", "expected"), [("softmax", math.log(10)), ("svm", 9.0), ("mlp", math.log(10))]
)
def test_initial_loss(name: str, expected: float) -> None:
    results = run_checks(name, {"reg": 0.1})
    initial = next(r for r in results if r.check == "initial loss")
    assert initial.value == pytest.approx(expected, rel=0.01)
    with_reg = next(r for r in results if r.check.startswith("initial loss increase with reg"))
    assert with_reg.value > 0 and with_reg.passed


@pytest.mark.parametrize("name", ["softmax", "svm", "mlp"])
def test_overfits_20_examples(name: str) -> None:
    overfit = next(r for r in run_checks(name, {}) if r.check.startswith("overfit"))
    assert overfit.value == 1.0 and overfit.passed


def test_overfit_fails_with_a_useless_learning_rate() -> None:
    overfit = next(r for r in run_checks("mlp", {"lr": 1e-9}) if r.check.startswith("overfit"))
    assert overfit.value < 1.0 and not overfit.passed


def test_collapsing_init_is_flagged_but_not_wrong() -> None:
    grads = rows(run_checks("mlp", {"init": 0.01, "hidden": 50, "depth": 3}), "grad data W1")
    assert grads[0].verdict in ("ok", "good")


def test_unknown_trainable_and_param() -> None:
    with pytest.raises(ValueError, match="unknown trainable 'cnn'"):
        run_checks("cnn", {})
    with pytest.raises(ValueError, match="unknown param 'hiden'"):
        run_checks("mlp", {"hiden": 10})
