"""Edge flags measured: false alarms on problems whose optimum is inside, detection on edges.

    python benchmarks/flags.py                            # 100 trials, seeds 0-29, sweep
    python benchmarks/flags.py --trials 60 --beyond       # a 60-trial stage, no sweep
    python benchmarks/flags.py --first-seed 30 --beyond   # the seeds the thresholds were tuned on

Each seed samples one coarse stage with `hpsearch.space.Space.sample` (a seeded numpy
Generator, as `hpsearch coarse` does), evaluates a synthetic function directly (no Ray, no
database; the observed value is f(x) plus Gaussian noise, as a short trial would report) and
runs four rules on the same trials:

  * new: `hpsearch.narrowing.analyze` with the defaults of `[fine]` (top 10, edge 0.1);
  * old: the rule hpsearch used before, reimplemented here: flag a side when the best trial's
    value lies in that side's outer 10% band (sampling scale);
  * hpf: optuna-hpf's published rule, reimplemented here: take the top 20% of completed trials
    (at least 3); flag a side when the mean or the median of their values lies within 10% of
    the range's width of that bound, measured in raw values (hpf does so even for log
    parameters); its log-scale rule comes first and suppresses the boundary rule. A variant
    computed in the sampling scale, `hpf (sampling scale)`, is shown too (fair to log ranges).

"Inside" problems have every optimum inside the ranges: any edge flag is a false alarm.
"Edge" problems have one parameter whose optimum lies beyond one side: detection is a flag
on that parameter and side; flags on other parameters are counted as false alarms too.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from search_quality import branin, hartmann6  # the same test functions, one definition

from hpsearch.narrowing import analyze
from hpsearch.space import Numeric, Space
from storage import TrialRecord

# -- problems ---------------------------------------------------------------------------------

Objective = Callable[[dict[str, Any]], float]


@dataclass(frozen=True)
class Problem:
    name: str
    space: Space
    f: Objective  # minimised
    noise: float  # standard deviation of the observed value around f
    edge: tuple[str, str] | None = None  # (param, side) whose optimum lies beyond the range


# The 10-parameter problem: three parameters matter (a bowl in the sampling scale, one unit
# of `width` per parameter; log1p keeps far-off trials ranked, like a loss), seven do not.
TEN_OPTIMUM = {"lr": -2.5, "dropout": 0.3, "layers": 4.0}  # lr in log10
TEN_WIDTH = {"lr": 1.0, "dropout": 0.25, "layers": 2.0}
TEN_SPACE = {
    "lr": Numeric("loguniform", 1e-6, 1.0),
    "dropout": Numeric("uniform", 0.0, 0.8),
    "layers": Numeric("randint", 1, 8),
    "momentum": Numeric("uniform", 0.5, 0.99),
    "beta2": Numeric("uniform", 0.9, 0.999),
    "init": Numeric("loguniform", 1e-3, 1.0),
    "hidden": Numeric("lograndint", 16, 1024),
    "batch": Numeric("lograndint", 16, 512),
    "warmup": Numeric("randint", 0, 10),
    "clip": Numeric("loguniform", 0.1, 10.0),
}


def ten(params: dict[str, Any], optimum: dict[str, float]) -> float:
    x = {"lr": math.log10(params["lr"]), "dropout": params["dropout"], "layers": params["layers"]}
    dist = sum(((x[k] - optimum[k]) / TEN_WIDTH[k]) ** 2 for k in optimum)
    return math.log1p(dist)


def ten_problem(
    name: str, edge: tuple[str, str] | None = None, layers_opt: float = 4.0, **ranges: Numeric
) -> Problem:
    optimum = {**TEN_OPTIMUM, "layers": layers_opt}
    space = Space({**TEN_SPACE, **ranges})
    return Problem(name, space, lambda p: ten(p, optimum), 0.1, edge)


def uniform(low: float, high: float) -> Numeric:
    return Numeric("uniform", low, high)


def decades(low: float, high: float) -> Numeric:
    return Numeric("loguniform", 10**low, 10**high)


def branin_problem(name: str, x2: Numeric, edge: tuple[str, str] | None = None) -> Problem:
    space = Space({"x1": uniform(-5, 10), "x2": x2})
    return Problem(name, space, lambda p: branin(p["x1"], p["x2"]), 1.0, edge)


def hartmann_problem(name: str, x1: Numeric, edge: tuple[str, str] | None = None) -> Problem:
    names = [f"x{i}" for i in range(1, 7)]
    space = Space({"x1": x1, **{n: uniform(0, 1) for n in names[1:]}})
    return Problem(name, space, lambda p: hartmann6([p[n] for n in names]), 0.02, edge)


def edge_problems(beyond: float) -> list[Problem]:
    """The 10-parameter problem with one range stopping `beyond` of its width short of the
    optimum: lr (log, 3 decades wide) on either side, dropout (linear, 0.5 wide) below,
    layers (int, 1..4) above."""
    lr_opt, d_opt = TEN_OPTIMUM["lr"], TEN_OPTIMUM["dropout"]
    tag = f"{beyond:.0%} beyond"
    return [
        ten_problem(
            f"lr high (log), {tag}",
            ("lr", "high"),
            lr=Numeric(
                "loguniform", 10 ** (lr_opt - 3 * (1 + beyond)), 10 ** (lr_opt - 3 * beyond)
            ),
        ),
        ten_problem(
            f"lr low (log), {tag}",
            ("lr", "low"),
            lr=Numeric(
                "loguniform", 10 ** (lr_opt + 3 * beyond), 10 ** (lr_opt + 3 * (1 + beyond))
            ),
        ),
        ten_problem(
            f"dropout low (linear), {tag}",
            ("dropout", "low"),
            dropout=uniform(d_opt + 0.5 * beyond, d_opt + 0.5 * (1 + beyond)),
        ),
        ten_problem(
            f"layers high (int 1..4), {tag}",
            ("layers", "high"),
            layers_opt=4 + 3 * beyond,
            layers=Numeric("randint", 1, 4),
        ),
    ]


def problems(beyond: float = 0.3) -> list[Problem]:
    return [
        branin_problem("branin", uniform(0, 15)),
        hartmann_problem("hartmann6", uniform(0, 1)),
        ten_problem("ten-params"),
        *edge_problems(beyond),
        # search_quality.py's edges: the metric barely improves past them
        branin_problem("branin x2 high (linear), 14% beyond", uniform(0, 2), ("x2", "high")),
        hartmann_problem(
            "hartmann6 x1 high (linear), 67% beyond", uniform(0, 0.12), ("x1", "high")
        ),
    ]


def records(problem: Problem, trials: int, seed: int) -> list[TrialRecord]:
    """One coarse stage: configurations as `hpsearch coarse` samples them, noisy values."""
    rng = np.random.default_rng(seed)
    configs = problem.space.sample(trials, rng)
    noise = rng.normal(0.0, problem.noise, size=trials)
    return [
        TrialRecord(i, 1, i, "completed", 0, 1, c, best_value=problem.f(c) + float(e))
        for i, (c, e) in enumerate(zip(configs, noise, strict=True))
    ]


# -- rules ------------------------------------------------------------------------------------

Flags = set[tuple[str, str]]  # (param, side)
EDGE, TOP = 0.1, 10  # hpsearch's `[fine]` defaults


def new_rule(space: Space, trials: list[TrialRecord]) -> Flags:
    result = analyze(space, trials, "min", top=TOP, edge=EDGE)
    return {(f.param, f.side) for f in result.flags if f.side in ("low", "high")}


def position(dim: Numeric, value: float) -> float:
    lo, hi = dim.to_scale(dim.low), dim.to_scale(dim.high)
    return (dim.to_scale(value) - lo) / (hi - lo)


def best_first(trials: list[TrialRecord]) -> list[TrialRecord]:
    return sorted(trials, key=lambda t: (t.best_value, t.number))


def old_rule(space: Space, trials: list[TrialRecord]) -> Flags:
    """hpsearch before: the best trial's value in the outer band of its range."""
    best = best_first(trials)[0]
    flags = set()
    for name, dim in numeric(space):
        pos = position(dim, best.params[name])
        if pos < EDGE:
            flags.add((name, "low"))
        elif pos > 1 - EDGE:
            flags.add((name, "high"))
    return flags


def hpf_rule(space: Space, trials: list[TrialRecord], *, sampling_scale: bool = False) -> Flags:
    """optuna-hpf's boundary rule (StudyAnalyzer top_k_percent=20, RangeSuggester defaults)."""
    n_top = min(len(trials), max(3, math.ceil(len(trials) * 0.2)))
    top = best_first(trials)[:n_top]
    flags = set()
    for name, dim in numeric(space):
        values = [float(t.params[name]) for t in top]
        if not dim.is_log and min(values) > 0 and max(values) / min(values) > 100:
            continue  # hpf's log-scale advice comes first and replaces the boundary check
        if sampling_scale:
            values, low, high = [position(dim, v) for v in values], 0.0, 1.0
        else:
            low, high = dim.low, dim.high
        threshold = 0.1 * (high - low)
        centres = (statistics.fmean(values), statistics.median(values))
        if any(c - low < threshold for c in centres):
            flags.add((name, "low"))
        if any(high - c < threshold for c in centres):
            flags.add((name, "high"))
    return flags


def numeric(space: Space) -> list[tuple[str, Numeric]]:
    return [(n, d) for n, d in space.dimensions.items() if isinstance(d, Numeric)]


RULES: dict[str, Callable[[Space, list[TrialRecord]], Flags]] = {
    "new": new_rule,
    "old": old_rule,
    "hpf": hpf_rule,
    "hpf (sampling scale)": lambda s, t: hpf_rule(s, t, sampling_scale=True),
}


# -- measurement ------------------------------------------------------------------------------


@dataclass
class Tally:
    hits: int = 0  # stages with the edge flagged (edge problems)
    others: int = 0  # stages with a flag on any other (param, side): false alarms
    stages: int = 0


def measure(problem: Problem, trials: int, seeds: range) -> dict[str, Tally]:
    tallies = {rule: Tally() for rule in RULES}
    for seed in seeds:
        recs = records(problem, trials, seed)
        for rule, flags_of in RULES.items():
            flags = flags_of(problem.space, recs)
            tally = tallies[rule]
            tally.stages += 1
            tally.hits += problem.edge in flags
            tally.others += bool(flags - {problem.edge})
    return tallies


def pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.0f}%)"


def table(rows: list[tuple[Problem, dict[str, Tally]]]) -> list[str]:
    head = "| problem | " + " | ".join(RULES) + " |"
    lines = [head, "|---" * (len(RULES) + 1) + "|"]
    for problem, tallies in rows:
        what = "detected" if problem.edge else "false alarms"
        cells = []
        for rule in RULES:
            t = tallies[rule]
            cell = pct(t.hits if problem.edge else t.others, t.stages)
            if problem.edge:
                cell += f", other flags {t.others}"
            cells.append(cell)
        lines.append(f"| {problem.name}: {what} | " + " | ".join(cells) + " |")
    for label, chosen, field in (
        ("inside problems: false alarms", [r for r in rows if not r[0].edge], "others"),
        ("edge problems: detected", [r for r in rows if r[0].edge], "hits"),
        (
            "10-parameter edges: detected",
            [r for r in rows if r[0].edge and len(r[0].space.dimensions) == len(TEN_SPACE)],
            "hits",
        ),
        ("edge problems: stages with another flag", [r for r in rows if r[0].edge], "others"),
    ):
        if not chosen:
            continue
        cells = []
        for rule in RULES:
            k = sum(getattr(t[rule], field) for _, t in chosen)
            cells.append(pct(k, sum(t[rule].stages for _, t in chosen)))
        lines.append(f"| **{label}** | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trials in the coarse stage")
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument(
        "--beyond", type=float, nargs="*", default=[0.1, 0.6], help="extra edge distances"
    )
    args = parser.parse_args()
    started = time.monotonic()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    rows = [(p, measure(p, args.trials, seeds)) for p in problems()]
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"Command: python {' '.join(sys.argv)}")
    print(f"Coarse stage of {args.trials} trials, top {TOP}, edge {EDGE}, seeds {seeds}\n")
    print("\n".join(table(rows)))
    for beyond in args.beyond:
        extra = [(p, measure(p, args.trials, seeds)) for p in edge_problems(beyond)]
        print(f"\nOptimum {beyond:.0%} of the width beyond the edge:\n")
        print("\n".join(table(extra)))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
