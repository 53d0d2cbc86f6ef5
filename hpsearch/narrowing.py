"""Analysis of a finished stage: edge flags and the ranges proposed for the next stage.

Pure: trials in, flags and a proposal out; no Ray, no database. Everything is computed in
the sampling scale (log10 for log types, linear otherwise):

* edge flags weigh evidence, for each side of each numeric parameter: the metric must improve
  toward that side across all the stage's completed trials (Spearman rank correlation, one-sided,
  Bonferroni over both sides of every numeric parameter), the top N must crowd the outer `edge`
  band more than chance allows (hypergeometric tail against the band's share of all trials),
  and the best trial must lie in or next to the band -> flag low/high;
* proposal from the top N completed trials: the span of their values padded by `pad` times
  that span on each side (at least `edge` of the old width wide); unflagged sides never go past
  the old bounds; a flagged side moves outward past the old bound by `pad` times the old width;
  hard limits `min`/`max` are never crossed; int types stay int with at least one value;
* a linear parameter whose top values are all positive and span > 1.5 decades is flagged
  `scale` and proposed as the log type;
* a choice keeps the values seen among the top N.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpsearch.ranking import ranked
from hpsearch.space import Choice, Numeric, Space
from storage import FlagRecord, Mode, ParamTrend, StageTally, TrialRecord

SCALE_DECADES = 1.5  # a linear range whose top values span more than this should be log
# Edge-flag thresholds, tuned on benchmarks/flags.py (see BENCHMARKS.md, "Edge flags"):
TREND_ALPHA = 0.05  # family-wise level of the trend test, split over 2 sides x numeric params
BAND_P = 0.1  # the top N must crowd the band at least this unlikely by chance
NEAR_BANDS = 2  # the best trial lies within this many band widths of the edge


@dataclass(frozen=True)
class Analysis:
    """Flags, the proposal (None when no trial completed) and one reason per parameter."""

    flags: list[FlagRecord]
    proposal: dict[str, dict[str, Any]] | None
    reasons: dict[str, str]
    completed: int
    best: TrialRecord | None

    def stored_proposal(self) -> dict[str, dict[str, Any]] | None:
        """The proposal as stored on the stage: each range carries its `reason`."""
        if self.proposal is None:
            return None
        return {p: {**r, "reason": self.reasons.get(p, "")} for p, r in self.proposal.items()}


def split_proposal(stored: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Inverse of `Analysis.stored_proposal`: (ranges, reasons)."""
    if stored is None:
        return None, {}
    ranges = {p: {k: v for k, v in r.items() if k != "reason"} for p, r in stored.items()}
    return ranges, {p: r.get("reason", "") for p, r in stored.items()}


def analyze(
    space: Space,
    trials: list[TrialRecord],
    mode: str,
    *,
    top: int = 10,
    edge: float = 0.1,
    pad: float = 0.25,
    tally: StageTally | None = None,
) -> Analysis:
    """Flags and the next stage's ranges from a finished stage's trials.

    `trials`: all the stage's trials; or, with the stage's `tally` (counted by the database),
    at least its best `top` completed trials."""
    order = ranked(trials, mode)
    if not order:
        return Analysis([], None, {}, 0, None)
    if tally is None:
        tally = stage_tally(space, trials, mode, edge)
    best, leaders = order[0], order[:top]
    tests = 2 * sum(isinstance(d, Numeric) for d in space.dimensions.values())
    flags: list[FlagRecord] = []
    proposal: dict[str, dict[str, Any]] = {}
    reasons: dict[str, str] = {}
    for name, dim in space.dimensions.items():
        values = [t.params[name] for t in leaders if name in t.params]
        if isinstance(dim, Choice):
            proposal[name], reasons[name] = _choice(dim, values, len(leaders))
            continue
        nums = [float(v) for v in values if isinstance(v, int | float)]
        if not nums or name not in best.params:
            proposal[name], reasons[name] = dim.to_dict(), "no values among the top trials: kept"
            continue
        trend = tally.trends.get(name)
        edge_flags = _edge_flags(name, dim, nums, trend, top, edge, tests) if trend else []
        new_flags, proposal[name], reasons[name] = _numeric(
            name, dim, float(best.params[name]), nums, edge_flags, edge, pad
        )
        flags.extend(new_flags)
    return Analysis(flags, proposal, reasons, tally.ranked, best)


def bands(space: Space, edge: float) -> dict[str, tuple[float, float]]:
    """Per numeric parameter with a range, the values bounding its outer bands: a value below
    the first lies in the low band, above the second in the high band."""
    out = {}
    for name, dim in space.dimensions.items():
        if isinstance(dim, Numeric) and dim.to_scale(dim.high) > dim.to_scale(dim.low):
            out[name] = _band_limits(dim, edge)
    return out


def _band_limits(dim: Numeric, edge: float) -> tuple[float, float]:
    lo, hi = dim.to_scale(dim.low), dim.to_scale(dim.high)
    return dim.from_scale(lo + edge * (hi - lo)), dim.from_scale(hi - edge * (hi - lo))


def stage_tally(space: Space, trials: Sequence[TrialRecord], mode: str, edge: float) -> StageTally:
    """What `Store.stage_tally` counts in SQL, from every trial of a stage in memory."""
    order = ranked(trials, mode)
    sign = 1.0 if Mode(mode) is Mode.MAX else -1.0
    trends = {}
    for name, (low, high) in bands(space, edge).items():
        pairs = [
            (v, sign * (t.best_value or 0.0))
            for t in order
            if (v := _number(t.params.get(name))) is not None
        ]
        xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
        rho = _pearson(_ranks(xs), _ranks(ys)) if pairs else 0.0
        below, above = sum(x < low for x in xs), sum(x > high for x in xs)
        trends[name] = ParamTrend(len(pairs), rho, below, above)
    counts = Counter(str(t.status) for t in trials)
    return StageTally(dict(counts), len(order), trends)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _choice(dim: Choice, values: list[Any], n: int) -> tuple[dict[str, Any], str]:
    seen = [v for v in dim.values if v in values] or list(dim.values)
    dropped = [v for v in dim.values if v not in seen]
    reason = f"kept {_join(seen)} (seen among the top {n})"
    if dropped:
        reason += f"; dropped {_join(dropped)}"
    return {"type": "choice", "values": seen}, reason


def _numeric(
    name: str,
    dim: Numeric,
    best: float,
    values: list[float],
    flags: list[FlagRecord],
    edge: float,
    pad: float,
) -> tuple[list[FlagRecord], dict[str, Any], str]:
    flags = list(flags)
    sides = {f.side for f in flags}
    scale_flag = _scale_flag(name, dim, best, values)
    if scale_flag is not None:
        flags.append(scale_flag)
        dim = _as_log(dim, values)
    new, reason = _propose(dim, values, sides, edge, pad)
    if scale_flag is not None:
        reason += "; switched to a log scale"
    return flags, new, reason


_SIDES = {"low": ("bottom", "min", "downward"), "high": ("top", "max", "upward")}


def _edge_flags(
    name: str,
    dim: Numeric,
    leaders: list[float],
    trend: ParamTrend,
    top: int,
    edge: float,
    tests: int,
) -> list[FlagRecord]:
    """Flag a side only when the stage's trials give evidence that the optimum lies past it.

    `leaders`: the values of the top trials, best first; `trend`: the parameter across all
    completed trials. Under "this parameter does not matter", which trials make the top N is
    unrelated to where their values lie, so the count of top trials in the band is
    hypergeometric given the band's share of all trials (which also covers int rounding) and
    the rank correlation between position and goodness is ~0."""
    lo, hi = dim.to_scale(dim.low), dim.to_scale(dim.high)
    if hi <= lo or trend.trials < 3:
        return []
    top = min(top, trend.trials)
    low, high = _band_limits(dim, edge)
    position = (dim.to_scale(leaders[0]) - lo) / (hi - lo)
    flags = []
    for side in ("low", "high"):
        in_top = sum((v > high) if side == "high" else (v < low) for v in leaders[:top])
        in_all = trend.high_band if side == "high" else trend.low_band
        rho = trend.rho if side == "high" else -trend.rho
        toward = position if side == "high" else 1 - position
        evidence = _Evidence.weigh(in_top, in_all, trend.trials, top, rho, toward)
        if evidence.holds(tests, edge):
            flags.append(_edge_flag(name, dim, side, leaders[0], position, evidence, edge))
    return flags


@dataclass(frozen=True)
class _Evidence:
    """How strongly a stage's trials point past one side of a range."""

    in_band: int  # top trials in the outer band
    top: int
    expected: float  # top trials expected in the band by chance
    p_band: float  # chance of at least `in_band` of them there
    crowded: bool  # p_band <= BAND_P, or every band trial (up to N) is among the top N
    rho: float  # rank correlation of goodness with closeness to the side, all trials
    p_trend: float  # one-sided chance of a correlation at least this large
    best: float  # the best trial's closeness to the side, 1 = at the edge
    trials: int

    @classmethod
    def weigh(
        cls, in_top: int, in_all: int, n: int, top: int, rho: float, best: float
    ) -> _Evidence:
        p_trend = 0.5 * math.erfc(rho * math.sqrt(n - 1) / math.sqrt(2))  # normal approximation
        p_band = _hypergeometric_tail(in_top, n, in_all, top)
        # a band that few trials sampled cannot reach BAND_P: then all of them among the top
        # (the smallest chance attainable) is as much as the band can say
        p_floor = _hypergeometric_tail(min(top, in_all), n, in_all, top)
        crowded = p_band <= max(BAND_P, p_floor) and in_top > 0
        return cls(in_top, top, top * in_all / n, p_band, crowded, rho, p_trend, best, n)

    def holds(self, tests: int, edge: float) -> bool:
        return (
            self.p_trend < TREND_ALPHA / max(tests, 1)
            and self.crowded
            and self.best > 1 - NEAR_BANDS * edge
        )


def _edge_flag(
    name: str,
    dim: Numeric,
    side: str,
    best: float,
    position: float,
    evidence: _Evidence,
    edge: float,
) -> FlagRecord:
    word, limit_name, direction = _SIDES[side]
    limit = dim.minimum if side == "low" else dim.maximum
    if limit is not None and limit == getattr(dim, side):
        advice = f"the range already ends at its hard limit {limit_name}={_fmt(limit)}"
    else:
        advice = f"widen the range {direction}"
    scale = "log" if dim.is_log else "linear"
    e = evidence
    message = (
        f"{name}: {e.in_band} of the top {e.top} in the {word} {edge:.0%} of "
        f"[{_fmt(dim.low)}, {_fmt(dim.high)}] ({scale} scale), {e.expected:.1f} expected by "
        f"chance ({_fmt_p(e.p_band)}); the metric improves toward that end across all "
        f"{e.trials} trials (rank correlation {e.rho:.2f}, {_fmt_p(e.p_trend)}); "
        f"best value {_fmt(best)}: {advice}"
    )
    return FlagRecord(name, side, best, position, message)


def _ranks(xs: Sequence[float]) -> list[float]:
    """Average ranks, 1-based (ties share their mean rank)."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Correlation; 0 when either side does not vary."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def _hypergeometric_tail(k: int, n: int, marked: int, drawn: int) -> float:
    """P(at least k marked among `drawn` of n without replacement, `marked` of them marked)."""
    total = math.comb(n, drawn)
    hits = sum(
        math.comb(marked, j) * math.comb(n - marked, drawn - j)
        for j in range(k, min(drawn, marked) + 1)
    )
    return hits / total


def _fmt_p(p: float) -> str:
    return f"p={p:.2g}" if p >= 1e-4 else "p<0.0001"


def _scale_flag(name: str, dim: Numeric, best: float, values: list[float]) -> FlagRecord | None:
    if dim.is_log or min(values) <= 0:
        return None
    decades = math.log10(max(values) / min(values))
    if decades <= SCALE_DECADES:
        return None
    log_type = "lograndint" if dim.is_int else "loguniform"
    message = (
        f"{name}: the top {len(values)} values span {decades:.1f} decades "
        f"({_fmt(min(values))} to {_fmt(max(values))}) on a linear scale: "
        f"sample it on a log scale ({log_type})"
    )
    return FlagRecord(name, "scale", best, None, message)


def _as_log(dim: Numeric, values: list[float]) -> Numeric:
    """The same range as a log type; a non-positive low becomes the smallest top value / 10."""
    low = dim.low if dim.low > 0 else min(values) / 10
    if dim.is_int:
        low = max(1, math.floor(low))
    minimum = dim.minimum if dim.minimum is not None and dim.minimum > 0 else None
    log_type = "lograndint" if dim.is_int else "loguniform"
    return Numeric(log_type, low, dim.high, minimum, dim.maximum)


def _propose(
    dim: Numeric, values: list[float], flagged: set[str], edge: float, pad: float
) -> tuple[dict[str, Any], str]:
    old_lo, old_hi = dim.to_scale(dim.low), dim.to_scale(dim.high)
    old_width = old_hi - old_lo
    scaled = [dim.to_scale(v) for v in values]
    vmin, vmax = min(scaled), max(scaled)
    floor_width = edge * old_width
    if vmax - vmin < floor_width:  # one value, or all alike: keep a useful width around them
        centre = (vmin + vmax) / 2
        vmin, vmax = centre - floor_width / 2, centre + floor_width / 2
    margin = pad * (vmax - vmin)
    lo, hi = vmin - margin, vmax + margin
    lo = old_lo - pad * old_width if "low" in flagged else max(lo, old_lo)
    hi = old_hi + pad * old_width if "high" in flagged else min(hi, old_hi)
    low, high = _limits(dim, dim.from_scale(lo), dim.from_scale(hi))
    new = Numeric(dim.type, low, high, dim.minimum, dim.maximum).to_dict()
    return new, _reason(dim, values, flagged, low, high)


def _limits(dim: Numeric, low: float, high: float) -> tuple[float, float]:
    if dim.minimum is not None:
        low, high = max(low, dim.minimum), max(high, dim.minimum)
    if dim.maximum is not None:
        low, high = min(low, dim.maximum), min(high, dim.maximum)
    if not dim.is_int:
        return float(low), float(high)
    ilow, ihigh = math.floor(low + 0.5), math.floor(high + 0.5)  # nearest ints
    if dim.is_log:
        ilow = max(ilow, 1)
    if dim.minimum is not None:
        ilow = max(ilow, int(dim.minimum))
    if dim.maximum is not None:
        ihigh = min(ihigh, int(dim.maximum))
    return ilow, max(ilow, ihigh)


def _reason(dim: Numeric, values: list[float], flagged: set[str], low: float, high: float) -> str:
    parts = [
        f"top {len(values)} span [{_fmt(min(values))}, {_fmt(max(values))}], padded",
    ]
    for side in ("low", "high"):
        if side in flagged:
            parts.append(f"{side} side widened past the old {side} {_fmt(getattr(dim, side))}")
    if low == high:
        parts.append("collapsed to one value")
    return "; ".join(parts)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _join(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


__all__ = ["Analysis", "analyze", "bands", "ranked", "split_proposal", "stage_tally"]
