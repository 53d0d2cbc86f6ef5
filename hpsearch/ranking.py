"""Best first: the one ranking of trial records, built on `Mode` (in SQL the same order:
`load_trials(top=...)`, `Store.top_trials`); and the uniform sample that stands in for a
large stage's trials beside its best ones (`sample_every`).

Only completed trials with a value are ranked; ties keep their order (trial order).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from storage import Mode, Status, TrialRecord


def ranked(trials: Iterable[TrialRecord], mode: str) -> list[TrialRecord]:
    """Completed trials with a value, best first."""
    done = [t for t in trials if t.status == Status.COMPLETED and t.best_value is not None]
    return Mode(mode).best_first(done, lambda t: t.best_value or 0.0)


def sample_every(trials: int, limit: int) -> int:
    """Every how many trials (by number) to read for a sample of at most about `limit` of
    `trials`: 1 when they are few enough. A stage's configurations are independent draws in
    trial order, so every k-th trial is a uniform sample of them."""
    return max(1, math.ceil(trials / limit))


__all__ = ["ranked", "sample_every"]
