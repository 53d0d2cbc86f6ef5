"""Best first: the one ranking of trials, for records and for DataFrames, built on `Mode`.

Only completed trials with a value are ranked; ties keep their order (trial order).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from storage import Mode, Status, TrialRecord

if TYPE_CHECKING:  # pandas is imported by the caller that has a frame
    import pandas as pd


def ranked(trials: Iterable[TrialRecord], mode: str) -> list[TrialRecord]:
    """Completed trials with a value, best first."""
    done = [t for t in trials if t.status == Status.COMPLETED and t.best_value is not None]
    return Mode(mode).best_first(done, lambda t: t.best_value or 0.0)


def top_completed(trials: pd.DataFrame, mode: str, k: int | None = None) -> pd.DataFrame:
    """Rows of completed trials with a best value (a `load_trials` frame), best first."""
    done = trials[(trials["status"] == Status.COMPLETED) & trials["best_value"].notna()]
    values = done["best_value"].to_numpy()
    order = Mode(mode).best_first(range(len(done)), lambda i: float(values[i]))
    return done.iloc[order if k is None else order[:k]]


__all__ = ["ranked", "top_completed"]
