"""Search spaces: parameter ranges that sample from a seeded generator.

Pure: no Ray, no database. Log types are uniform in log10 space (equal mass per decade).
Integer ranges include both ends (Ray Tune's `randint` excludes `high`; hpsearch does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

NUMERIC_TYPES = ("loguniform", "uniform", "lograndint", "randint")
TYPES = (*NUMERIC_TYPES, "choice")


@dataclass(frozen=True)
class Numeric:
    """A numeric range; `minimum`/`maximum` are hard limits that narrowing never crosses."""

    type: str
    low: float
    high: float
    minimum: float | None = None
    maximum: float | None = None

    @property
    def is_log(self) -> bool:
        return self.type.startswith("log")

    @property
    def is_int(self) -> bool:
        return self.type.endswith("randint")

    def to_scale(self, value: float) -> float:
        """Position on the sampling scale (log10 for log types)."""
        return math.log10(value) if self.is_log else value

    def from_scale(self, x: float) -> float:
        return 10.0**x if self.is_log else x

    def sample(self, rng: np.random.Generator, n: int) -> list[float] | list[int]:
        high = self.high + 1 if self.is_int else self.high
        lo, hi = self.to_scale(self.low), self.to_scale(high)
        drawn = np.array([self.from_scale(x) for x in rng.uniform(lo, hi, size=n)])
        if self.is_int:
            return [int(v) for v in np.clip(np.floor(drawn), self.low, self.high)]
        return [float(v) for v in drawn]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.minimum is not None:
            out["min"] = self.minimum
        if self.maximum is not None:
            out["max"] = self.maximum
        return out


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]
    type: str = "choice"

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        return [self.values[i] for i in rng.integers(0, len(self.values), size=n)]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "choice", "values": list(self.values)}


Dimension = Numeric | Choice


def dimension_from_dict(d: dict[str, Any]) -> Dimension:
    """Inverse of `to_dict`, for ranges stored on a stage (already validated)."""
    if d["type"] == "choice":
        return Choice(tuple(d["values"]))
    return Numeric(d["type"], d["low"], d["high"], d.get("min"), d.get("max"))


@dataclass(frozen=True)
class Space:
    dimensions: dict[str, Dimension]

    def sample(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """n configurations; one column per parameter drawn in the space's order."""
        columns = {name: dim.sample(rng, n) for name, dim in self.dimensions.items()}
        return [{name: col[i] for name, col in columns.items()} for i in range(n)]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dim.to_dict() for name, dim in self.dimensions.items()}

    def typed(self, params: dict[str, Any]) -> dict[str, Any]:
        """Params read back from the database (numbers are floats) in this space's types."""
        out = dict(params)
        for name, dim in self.dimensions.items():
            if name not in out:
                continue
            if isinstance(dim, Numeric) and dim.is_int:
                out[name] = int(round(out[name]))
            elif isinstance(dim, Choice):
                out[name] = next((v for v in dim.values if v == out[name]), out[name])
        return out

    @classmethod
    def from_dict(cls, ranges: dict[str, dict[str, Any]]) -> Space:
        return cls({name: dimension_from_dict(d) for name, d in ranges.items()})


def trial_seeds(rng: np.random.Generator, n: int) -> list[int]:
    return [int(s) for s in rng.integers(0, 2**31 - 1, size=n)]
