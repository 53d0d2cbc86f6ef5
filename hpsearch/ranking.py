"""Best first: the one ranking of trial records, built on `Mode` (in SQL the same order:
`load_trials(top=...)`, `Store.top_trials`).

Only completed trials with a value are ranked; ties keep their order (trial order).
"""

from __future__ import annotations

from collections.abc import Iterable

from storage import Mode, Status, TrialRecord


def ranked(trials: Iterable[TrialRecord], mode: str) -> list[TrialRecord]:
    """Completed trials with a value, best first."""
    done = [t for t in trials if t.status == Status.COMPLETED and t.best_value is not None]
    return Mode(mode).best_first(done, lambda t: t.best_value or 0.0)


__all__ = ["ranked"]
