"""Which checkpoints to keep, so 100,000 coarse trials do not fill a disk.

Pure: records in, the checkpoints to keep out. A finished trial among the stage's best
`keep_trials` keeps its best `keep_epochs` epochs plus its last; other finished trials keep
none; a trial still running keeps its best `keep_epochs` epochs so far plus its latest (a lost
attempt restarts from the latest; pruning while it runs must not take the epochs it keeps if
it ends among the best).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from storage import Mode


@dataclass(frozen=True)
class Kept:
    """A checkpoint as retention sees it: whose, which epoch, the metric at that epoch."""

    trial_id: int
    attempt: int
    epoch: int
    value: float | None


def to_keep(
    checkpoints: Iterable[Kept],
    finished_best: dict[int, float | None],
    mode: Mode,
    *,
    keep_trials: int,
    keep_epochs: int,
) -> set[Kept]:
    """The checkpoints to keep; `finished_best` maps each finished trial to its best value."""
    by_trial: dict[int, list[Kept]] = {}
    for c in checkpoints:
        by_trial.setdefault(c.trial_id, []).append(c)
    ranked = mode.best_first(
        [t for t, v in finished_best.items() if v is not None], lambda t: finished_best[t] or 0.0
    )
    leaders = set(ranked[:keep_trials])
    keep: set[Kept] = set()
    for trial_id, own in by_trial.items():
        last = max(own, key=lambda c: (c.attempt, c.epoch))
        if trial_id in leaders or trial_id not in finished_best:
            valued = [c for c in own if c.value is not None]
            keep.update(mode.best_first(valued, lambda c: c.value or 0.0)[:keep_epochs])
            keep.add(last)
    return keep
