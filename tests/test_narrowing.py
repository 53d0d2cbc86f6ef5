"""Narrowing is pure: trial records in, flags and proposed ranges out."""

from __future__ import annotations

import math

from hpsearch.narrowing import analyze
from hpsearch.space import Choice, Numeric, Space
from storage import TrialRecord


def trial(number: int, value: float | None, status: str = "completed", **params) -> TrialRecord:
    return TrialRecord(number, 1, number, status, 0, 1, params, best_value=value)


def grid_trials(space_fn, n: int = 40) -> list[TrialRecord]:
    """Trials whose value is a function of their params (higher is better)."""
    out = []
    for i in range(n):
        params = space_fn(i / (n - 1))
        out.append(trial(i, params.pop("_value"), **params))
    return out


LR_REG = Space(
    {
        "lr": Numeric("loguniform", 1e-6, 10.0),
        "reg": Numeric("loguniform", 1e-5, 10.0),
    }
)


def lr_reg_trials() -> list[TrialRecord]:
    """lr's optimum 1e-2.5 lies inside; reg's 10**1.5 lies above the range."""
    out = []
    for i in range(49):
        lr = 10 ** (-6 + 7 * (i % 7) / 6)
        reg = 10 ** (-5 + 6 * (i // 7) / 6)
        value = -((math.log10(lr) + 2.5) ** 2) - (math.log10(reg) - 1.5) ** 2
        out.append(trial(i, value, lr=lr, reg=reg))
    return out


def test_optimum_above_range_is_flagged_high_and_widened() -> None:
    result = analyze(LR_REG, lr_reg_trials(), "max", top=5)
    flags = {f.param: f for f in result.flags}
    assert set(flags) == {"reg"}
    assert flags["reg"].side == "high"
    assert flags["reg"].position == 1.0
    assert (
        "reg: best value 10 lies in the top 10% of [1e-05, 10] (log scale)" in flags["reg"].message
    )
    assert flags["reg"].message.endswith("widen the range upward")
    assert result.proposal is not None
    assert result.proposal["reg"]["high"] > 10.0
    assert result.proposal["reg"]["type"] == "loguniform"
    assert "widened past the old high" in result.reasons["reg"]


def test_optimum_inside_is_narrowed_around_it() -> None:
    result = analyze(LR_REG, lr_reg_trials(), "max", top=5)
    lr = result.proposal["lr"]  # type: ignore[index]
    assert 1e-6 <= lr["low"] < 10**-2.5 < lr["high"] <= 10
    assert math.log10(lr["high"] / lr["low"]) < 0.6 * 7  # clearly narrower than 7 decades


def test_min_mode_ranks_lowest_first() -> None:
    trials = [trial(i, float(i), x=float(i)) for i in range(10)]
    space = Space({"x": Numeric("uniform", 0.0, 9.0)})
    result = analyze(space, trials, "min", top=3)
    assert result.best is not None and result.best.number == 0
    assert [f.side for f in result.flags] == ["low"]


def test_all_failed_gives_no_proposal() -> None:
    trials = [trial(0, None, "failed", x=1.0), trial(1, None, "diverged", x=2.0)]
    result = analyze(Space({"x": Numeric("uniform", 0.0, 5.0)}), trials, "max")
    assert result.proposal is None and result.flags == [] and result.completed == 0


def test_one_completed_trial_gives_a_range_around_it() -> None:
    trials = [trial(0, 0.5, x=0.01), trial(1, None, "failed", x=0.5)]
    space = Space({"x": Numeric("loguniform", 1e-4, 1.0)})
    result = analyze(space, trials, "max")
    x = result.proposal["x"]  # type: ignore[index]
    assert x["low"] < 0.01 < x["high"]
    assert x["low"] >= 1e-4 and x["high"] <= 1.0
    assert result.flags == []


def test_choice_keeps_values_seen_among_the_top() -> None:
    space = Space({"update": Choice(("sgd", "momentum", "adam"))})
    trials = [
        trial(i, v, update=u)
        for i, (v, u) in enumerate([(0.9, "adam"), (0.8, "momentum"), (0.1, "sgd"), (0.85, "adam")])
    ]
    result = analyze(space, trials, "max", top=3)
    assert result.proposal == {"update": {"type": "choice", "values": ["momentum", "adam"]}}
    assert result.flags == []
    assert "dropped sgd" in result.reasons["update"]


def test_int_range_collapses_to_one_value_and_stays_int() -> None:
    space = Space({"layers": Numeric("randint", 1, 3)})
    trials = [trial(i, 1.0 if i % 2 else 0.5, layers=2) for i in range(10)]
    result = analyze(space, trials, "max", top=5)
    assert result.proposal == {"layers": {"type": "randint", "low": 2, "high": 2}}
    assert isinstance(result.proposal["layers"]["low"], int)
    assert "collapsed to one value" in result.reasons["layers"]
    # and the collapsed range still samples
    assert (
        Space.from_dict(result.proposal).sample(3, __import__("numpy").random.default_rng(0))
        == [{"layers": 2}] * 3
    )


def test_hard_limits_are_never_crossed() -> None:
    space = Space({"dropout": Numeric("uniform", 0.0, 0.7, 0.0, 0.75)})
    trials = [trial(i, i / 10, dropout=0.07 * i) for i in range(11)]  # best at 0.7
    result = analyze(space, trials, "max", top=3)
    d = result.proposal["dropout"]  # type: ignore[index]
    assert d["high"] == 0.75 and d["max"] == 0.75 and d["min"] == 0.0
    assert [f.side for f in result.flags] == ["high"]
    # already at the hard limit: the flag says so instead of advising to widen
    space = Space({"dropout": Numeric("uniform", 0.0, 0.7, 0.0, 0.7)})
    result = analyze(space, trials, "max", top=3)
    assert result.proposal["dropout"]["high"] == 0.7  # type: ignore[index]
    assert "already ends at its hard limit max=0.7" in result.flags[0].message


def test_low_edge_respects_min_for_log_types() -> None:
    space = Space({"lr": Numeric("loguniform", 1e-3, 1.0, 5e-4, None)})
    trials = [trial(i, -i, lr=10 ** (-3 + i / 3)) for i in range(10)]  # best at the low end
    result = analyze(space, trials, "max", top=3)
    assert [f.side for f in result.flags] == ["low"]
    assert result.proposal["lr"]["low"] == 5e-4  # type: ignore[index]


def test_linear_param_spanning_decades_gets_scale_advice() -> None:
    space = Space({"hidden": Numeric("randint", 1, 1000)})
    trials = [trial(i, 1.0, hidden=h) for i, h in enumerate([3, 10, 40, 200, 900, 500])]
    trials.append(trial(9, 0.0, hidden=600))
    result = analyze(space, trials, "max", top=6)
    scale = [f for f in result.flags if f.side == "scale"]
    assert len(scale) == 1 and "sample it on a log scale (lograndint)" in scale[0].message
    hidden = result.proposal["hidden"]  # type: ignore[index]
    assert hidden["type"] == "lograndint" and hidden["low"] >= 1 and hidden["high"] <= 1000


def test_stored_proposal_round_trips_to_a_space() -> None:
    result = analyze(LR_REG, lr_reg_trials(), "max", top=5)
    stored = result.stored_proposal()
    assert stored is not None and all("reason" in r for r in stored.values())
    space = Space.from_dict(stored)
    assert set(space.dimensions) == {"lr", "reg"}
