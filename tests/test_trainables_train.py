"""Training loops of softmax, svm and mlp as a user runs them."""

from __future__ import annotations

import math
import time

import pytest

from trainables import mlp, softmax, svm

BASE = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


def run(module, params: dict, epochs: int, seed: int = 0) -> list[dict[str, float]]:  # type: ignore[no-untyped-def]
    return list(module.train(params, epochs=epochs, seed=seed))


def test_mlp_on_digits_reaches_95_percent_within_seconds() -> None:
    start = time.perf_counter()
    history = run(mlp, {"lr": 3e-3, "hidden": 100, "batch": 50, "update": "adam"}, epochs=10)
    assert time.perf_counter() - start < 10
    assert max(m["val_acc"] for m in history) >= 0.95
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.parametrize("module", [softmax, svm])
def test_linear_models_learn_digits(module) -> None:  # type: ignore[no-untyped-def]
    history = run(module, {}, epochs=5)
    assert history[-1]["val_acc"] > 0.85


def test_metrics_and_diagnostics_are_floats_with_documented_names() -> None:
    history = run(mlp, {"hidden": "30,20"}, 2)
    assert len(history) == 2
    names = set(history[0])
    assert set(BASE) <= names
    for diag in ("update_ratio", "grad_norm"):
        assert {f"{diag}/W1", f"{diag}/W2", f"{diag}/W3"} <= names
    assert {"act_mean/h1", "act_std/h1", "act_mean/h2", "act_std/h2"} <= names
    assert all(type(v) is float and math.isfinite(v) for m in history for v in m.values())
    assert 1e-5 < history[0]["update_ratio/W1"] < 1e-1
    linear = run(softmax, {}, 1)[0]
    assert {"update_ratio/W", "grad_norm/W"} <= set(linear)


def test_same_seed_same_metrics_other_seed_differs() -> None:
    params = {"hidden": 30, "dropout": 0.2, "lr": 3e-3}
    a, b, c = (run(mlp, params, 2, seed) for seed in (7, 7, 8))
    strip = lambda h: [{k: v for k, v in m.items() if k != "seconds"} for m in h]  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


@pytest.mark.parametrize("module", [softmax, svm, mlp])
def test_huge_learning_rate_stops_early_as_diverged(module) -> None:  # type: ignore[no-untyped-def]
    seen = []
    with pytest.raises(FloatingPointError, match=r"train_loss .* at epoch \d"):
        for metrics in module.train({"lr": 1e6, "update": "sgd"}, epochs=20, seed=0):
            seen.append(metrics)
    assert len(seen) < 3


def test_divergence_message_names_the_rule() -> None:
    with pytest.raises(FloatingPointError, match=r"> 3x initial"):
        run(svm, {"lr": 1e4}, 5)


def test_annealing_is_reported_in_lr() -> None:
    history = run(softmax, {"lr": 0.4, "anneal": "step", "anneal_every": 2}, 5)
    assert [m["lr"] for m in history] == [0.4, 0.4, 0.2, 0.2, 0.1]


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_every_update_rule_trains(rule: str) -> None:
    lr = {"sgd": 0.3, "momentum": 0.03, "nesterov": 0.03, "adagrad": 0.03}.get(rule, 3e-3)
    history = run(mlp, {"update": rule, "lr": lr, "hidden": 50}, 3)
    assert history[-1]["val_acc"] > 0.8


def test_unknown_param_is_named() -> None:
    with pytest.raises(ValueError, match="unknown param 'hiddne'"):
        run(mlp, {"hiddne": 10}, 1)
    with pytest.raises(ValueError, match="param 'batch' must be int"):
        run(softmax, {"batch": 12.5}, 1)
    with pytest.raises(ValueError, match="unknown rule 'adamw'"):
        run(mlp, {"update": "adamw"}, 1)
    with pytest.raises(ValueError, match="hidden"):
        run(mlp, {"hidden": "10,x"}, 1)


def test_integral_floats_are_accepted_for_int_params() -> None:
    metrics = run(mlp, {"batch": 64.0, "hidden": 20.0, "lr": 1e-2}, 2)[-1]
    assert metrics["val_acc"] > 0.5


def test_synthetic_data_and_train_rows() -> None:
    params = {"data": "synthetic", "rows": 2000, "features": 20, "classes": 3, "lr": 3e-3}
    history = run(mlp, params, 3)
    assert history[-1]["val_acc"] > 0.5
    assert run(softmax, {"train_rows": 50}, 1)[0]["train_acc"] <= 1.0


def test_every_builtin_trainable_is_a_generator_function() -> None:
    """hpsearch refuses trainables that are not generator functions (docs/ARCHITECTURE.md)."""
    import inspect

    from trainables import mlp, softmax, svm, synthetic

    for module in (softmax, svm, mlp, synthetic):
        assert inspect.isgeneratorfunction(module.train), module.__name__
