"""Sampling: seeded, reproducible across processes, equal mass per decade on log scales."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hpsearch.space import Choice, Numeric, Space

SPACE = Space(
    {
        "lr": Numeric("loguniform", 1e-6, 10.0),
        "dropout": Numeric("uniform", 0.0, 0.7),
        "batch": Numeric("lograndint", 16, 512),
        "layers": Numeric("randint", 1, 3),
        "update": Choice(("sgd", "momentum", "adam")),
    }
)


def test_same_seed_same_configurations_and_other_seed_differs() -> None:
    a = SPACE.sample(50, np.random.default_rng(7))
    b = SPACE.sample(50, np.random.default_rng(7))
    c = SPACE.sample(50, np.random.default_rng(8))
    assert a == b
    assert a != c


def test_same_configurations_in_another_process() -> None:
    code = (
        "import json, numpy as np; from tests.test_space import SPACE; "
        "print(json.dumps(SPACE.sample(20, np.random.default_rng(3))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    here = json.loads(json.dumps(SPACE.sample(20, np.random.default_rng(3))))
    assert json.loads(out) == here


def test_values_stay_in_range_and_have_the_right_types() -> None:
    for config in SPACE.sample(2000, np.random.default_rng(1)):
        assert 1e-6 <= config["lr"] <= 10.0
        assert 0.0 <= config["dropout"] <= 0.7
        assert isinstance(config["batch"], int) and 16 <= config["batch"] <= 512
        assert config["layers"] in (1, 2, 3)
        assert config["update"] in ("sgd", "momentum", "adam")


def test_int_ranges_include_both_ends() -> None:
    values = Numeric("randint", 1, 3).sample(np.random.default_rng(0), 3000)
    assert set(values) == {1, 2, 3}
    counts = np.bincount(values)[1:]
    assert counts.min() > 900  # each of 3 values about 1000 times


@pytest.mark.parametrize("dim", [Numeric("loguniform", 1e-6, 10.0), Numeric("lograndint", 1, 9999)])
def test_log_types_put_equal_mass_in_each_decade(dim: Numeric) -> None:
    """Chi-square test at a fixed seed: counts per decade match the uniform expectation."""
    n = 20_000
    values = np.array(dim.sample(np.random.default_rng(123), n), dtype=float)
    edges = np.arange(np.floor(np.log10(dim.low)), np.log10(dim.high + (1 if dim.is_int else 0)))
    decades = np.floor(np.log10(values)).astype(int)
    counts = np.array([(decades == e).sum() for e in edges])
    expected = n / len(edges)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # 99.9% quantile of chi-square with <= 6 degrees of freedom is below 22.5
    assert chi2 < 22.5, counts


def test_uniform_is_not_log() -> None:
    values = np.array(Numeric("uniform", 0.0, 10.0).sample(np.random.default_rng(5), 10_000))
    assert 0.45 < (values < 5).mean() < 0.55


def test_to_dict_round_trip() -> None:
    ranges = SPACE.to_dict()
    assert Space.from_dict(json.loads(json.dumps(ranges))) == SPACE


def test_typed_restores_ints_and_choice_values_read_back_as_floats() -> None:
    space = Space(
        {
            "batch": Numeric("lograndint", 16, 512),
            "lr": Numeric("loguniform", 1e-3, 1.0),
            "width": Choice((64, 128)),
            "nesterov": Choice((True, False)),
            "update": Choice(("sgd", "adam")),
        }
    )
    stored = {"batch": 17.0, "lr": 0.01, "width": 128.0, "nesterov": 1.0, "update": "adam"}
    typed = space.typed(stored)
    assert typed == {"batch": 17, "lr": 0.01, "width": 128, "nesterov": True, "update": "adam"}
    assert type(typed["batch"]) is int and type(typed["width"]) is int
    assert typed["nesterov"] is True
