"""Committing a running stage's results: one bad row costs its own trial, never the batch.

The worker already refuses metrics no database can store (`runtime.worker._as_metrics`); this
is the driver's second line. A batch the database refuses because of a row (its encoding, its
length, a constraint: `storage.RowError`) is written again trial by trial: the healthy trials'
rows land, each trial whose rows are refused ends `failed` with the database's reason, and its
later rows are dropped. Errors of the database itself (locked, disk full) still stop the stage.
"""

from __future__ import annotations

from typing import Any

from hpsearch.runtime.worker import storable
from storage import Batch, RowError, Status, Store, now


class Committer:
    """Writes the batches of one run of a stage; `counts` (a Progress's) is kept true."""

    def __init__(self, store: Store, counts: dict[str, int] | None = None) -> None:
        self.store = store
        self.counts = counts if counts is not None else {}
        self.refused: dict[int, str] = {}  # trial id -> why its rows were refused

    def __call__(self, batch: Batch) -> None:
        if self.refused:
            batch = self._drop_refused(batch)
        try:
            self.store.record(batch)
        except RowError:
            for trial_id, part in batch.by_trial().items():
                self._record_trial(trial_id, part)

    def _record_trial(self, trial_id: int, part: Batch) -> None:
        try:
            self.store.record(part)
        except RowError as exc:
            self._fail(trial_id, part, storable(exc.reason))

    def _fail(self, trial_id: int, part: Batch, reason: str) -> None:
        """The trial ends failed, its attempt opened if its start was in the refused rows.

        If even that is refused, the database is at fault, not the rows: the error propagates.
        """
        failure = Batch(started=part.started)
        failure.finish(
            trial_id,
            Status.FAILED,
            attempt=_attempt(part),
            error=f"its results could not be stored: {reason}",
            best=None,
            epochs_run=max((row["epoch"] for row in part.metrics), default=0),
            at=now(),
        )
        self.store.record(failure)
        self.refused[trial_id] = reason
        for row in part.finished:  # counted when its end arrived; it is failed instead
            self._count(row["status"], -1)
        self._count(Status.FAILED, +1)

    def _drop_refused(self, batch: Batch) -> Batch:
        """Later rows of trials already failed for refused rows (the trial ran on)."""
        for row in batch.finished:
            if row["tid"] in self.refused:
                self._count(row["status"], -1)
        return batch.without(set(self.refused))

    def _count(self, status: Any, change: int) -> None:
        self.counts[status] = self.counts.get(status, 0) + change


def _attempt(part: Batch) -> int:
    """The attempt the trial's refused rows belong to (the latest in them)."""
    numbers = [row["attempts"] for row in part.started + part.finished]
    numbers += [row["attempt"] for row in part.metrics] + [row["n"] for row in part.ended]
    return int(max(numbers))
