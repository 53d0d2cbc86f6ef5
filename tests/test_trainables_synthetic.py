"""The synthetic trainable: known optimum, monotone curves, cheap epochs."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from trainables import synthetic


def final(params: dict, epochs: int = 10, seed: int = 0) -> float:
    return list(synthetic.train(params, epochs=epochs, seed=seed))[-1]["val_acc"]


def test_optimum_beats_every_random_config() -> None:
    best, best_acc = synthetic.optimum(epochs=10)
    assert best["reg"] == pytest.approx(10**1.5)  # outside loguniform(1e-5, 1e1)
    assert synthetic.expected_val_acc({"lr": best["lr"], "reg": best["reg"]}, 10) == pytest.approx(
        best_acc
    )
    rng = np.random.default_rng(0)
    for _ in range(200):
        params = {"lr": 10 ** rng.uniform(-6, 0), "reg": 10 ** rng.uniform(-5, 1)}
        assert synthetic.expected_val_acc(params, 10) < best_acc


def test_best_value_inside_the_usual_range_is_on_its_edge() -> None:
    inside = [synthetic.expected_val_acc({"lr": 1e-2, "reg": r}, 5) for r in (1e-3, 1e-1, 1e1)]
    assert inside == sorted(inside)  # improves towards reg=10, the range edge


def test_optimum_location_is_configurable() -> None:
    params = {"lr": 1e-4, "opt_lr": -4.0}
    assert synthetic.quality(params) == pytest.approx(1.0)
    assert synthetic.optimum({"opt_lr": -4.0}, epochs=3)[0]["lr"] == pytest.approx(1e-4)


def test_curves_improve_with_epochs_and_keep_their_ranking() -> None:
    good, bad = {"lr": 10**-2.5, "reg": 10.0}, {"lr": 1e-5, "reg": 1e-4}
    for params in (good, bad):
        curve = [synthetic.expected_val_acc(params, e) for e in range(1, 21)]
        assert curve == sorted(curve)
    for epochs in (1, 3, 20):
        assert synthetic.expected_val_acc(good, epochs) > synthetic.expected_val_acc(bad, epochs)
    noisy = [m["val_acc"] for m in synthetic.train(good, epochs=20, seed=1)]
    assert noisy[-1] > noisy[0]


def test_noise_comes_from_the_seed() -> None:
    params = {"lr": 1e-3, "reg": 1.0}
    assert final(params, seed=1) == final(params, seed=1)
    assert final(params, seed=1) != final(params, seed=2)
    assert final({**params, "noise": 0.0}) == pytest.approx(synthetic.expected_val_acc(params, 10))


def test_choice_and_linear_dimensions() -> None:
    base = {"lr": 10**-2.5, "reg": 10**1.5, "dropout": 0.3}
    assert synthetic.quality({**base, "update": "adam"}) == pytest.approx(1.0)
    assert synthetic.quality({**base, "update": "sgd"}) < 1.0
    assert synthetic.quality({**base, "dropout": 0.0}) < 1.0


def test_huge_lr_diverges_at_epoch_two() -> None:
    seen = []
    with pytest.raises(FloatingPointError, match="at epoch 2"):
        for metrics in synthetic.train({"lr": 5.0}, epochs=5, seed=0):
            seen.append(metrics)
    assert len(seen) == 1


def test_epochs_cost_microseconds() -> None:
    start = time.perf_counter()
    for seed in range(200):
        for _ in synthetic.train({"lr": 1e-3, "reg": 1.0, "batch": 64}, epochs=5, seed=seed):
            pass
    assert (time.perf_counter() - start) / 1000 < 1e-3
    metrics = next(synthetic.train({"lr": 1e-3}, epochs=1, seed=0))
    assert set(metrics) >= {"val_acc", "val_loss", "train_loss"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


def test_unknown_and_invalid_params() -> None:
    with pytest.raises(ValueError, match="unknown param 'learning_rate'"):
        final({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="'lr' must be > 0"):
        final({"lr": 0.0})
