"""Analysis of a finished stage: edge flags and the ranges proposed for the next stage.

Pure: trials in, flags and a proposal out; no Ray, no database. Everything is computed in
the sampling scale (log10 for log types, linear otherwise):

* position of the best trial's value in [low, high]; in the outer `edge` band -> flag low/high;
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
from dataclasses import dataclass
from typing import Any

from hpsearch.ranking import ranked
from hpsearch.space import Choice, Numeric, Space
from storage import FlagRecord, TrialRecord

SCALE_DECADES = 1.5  # a linear range whose top values span more than this should be log


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


def split_proposal(stored: dict[str, Any] | None) -> tuple[dict | None, dict[str, str]]:
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
) -> Analysis:
    """Flags and the next stage's ranges from a finished stage's trials."""
    order = ranked(trials, mode)
    if not order:
        return Analysis([], None, {}, 0, None)
    best, leaders = order[0], order[:top]
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
        new_flags, proposal[name], reasons[name] = _numeric(
            name, dim, float(best.params[name]), nums, edge, pad
        )
        flags.extend(new_flags)
    return Analysis(flags, proposal, reasons, len(order), best)


def _choice(dim: Choice, values: list[Any], n: int) -> tuple[dict[str, Any], str]:
    seen = [v for v in dim.values if v in values] or list(dim.values)
    dropped = [v for v in dim.values if v not in seen]
    reason = f"kept {_join(seen)} (seen among the top {n})"
    if dropped:
        reason += f"; dropped {_join(dropped)}"
    return {"type": "choice", "values": seen}, reason


def _numeric(
    name: str, dim: Numeric, best: float, values: list[float], edge: float, pad: float
) -> tuple[list[FlagRecord], dict[str, Any], str]:
    flags = _edge_flags(name, dim, best, values, edge)
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
    name: str, dim: Numeric, best: float, values: list[float], edge: float
) -> list[FlagRecord]:
    lo, hi = dim.to_scale(dim.low), dim.to_scale(dim.high)
    if hi <= lo:
        return []
    positions = [(dim.to_scale(v) - lo) / (hi - lo) for v in values]
    pos = (dim.to_scale(best) - lo) / (hi - lo)
    if pos < edge:
        side, count = "low", sum(p < edge for p in positions)
    elif pos > 1 - edge:
        side, count = "high", sum(p > 1 - edge for p in positions)
    else:
        return []
    word, limit_name, direction = _SIDES[side]
    limit = dim.minimum if side == "low" else dim.maximum
    if limit is not None and limit == getattr(dim, side):
        advice = f"the range already ends at its hard limit {limit_name}={_fmt(limit)}"
    else:
        advice = f"widen the range {direction}"
    scale = "log" if dim.is_log else "linear"
    message = (
        f"{name}: best value {_fmt(best)} lies in the {word} {edge:.0%} of "
        f"[{_fmt(dim.low)}, {_fmt(dim.high)}] ({scale} scale), with {count} of the "
        f"top {len(values)} trials: {advice}"
    )
    return [FlagRecord(name, side, best, pos, message)]


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


__all__ = ["Analysis", "analyze", "ranked", "split_proposal"]
