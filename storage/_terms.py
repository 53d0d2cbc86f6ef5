"""The domain's words, stored as these exact strings: trial and stage statuses, stage kinds, modes,
how an attempt of a trial ended.

`Mode` owns what "better" and "best first" mean, so no other module compares with `>` by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")

DEFAULT_DB = "hpsearch.db"  # when neither --db nor HPSEARCH_DB names one
BUSY_TIMEOUT_MS = 30_000  # how long an SQLite connection waits for another's lock


class Status(StrEnum):
    """A trial's status; the last four are final (`stopped`: cut at a rung by ASHA, not a
    failure)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    DIVERGED = "diverged"
    STOPPED = "stopped"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.DIVERGED, Status.STOPPED)


class AttemptOutcome(StrEnum):
    """How one attempt of a trial ended: the trial's final status, or lost (its worker or node
    died; the trial runs again as a new attempt or fails when out of retries)."""

    COMPLETED = "completed"
    FAILED = "failed"
    DIVERGED = "diverged"
    STOPPED = "stopped"
    LOST = "lost"


class StageKind(StrEnum):
    COARSE = "coarse"
    FINE = "fine"
    ENSEMBLE = "ensemble"  # the best configuration again with new seeds (`ensemble --kind seeds`)

    @property
    def is_search(self) -> bool:
        """A stage that samples configurations (coarse, fine), not one that re-runs one."""
        return self is not StageKind.ENSEMBLE


class StageStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"


class Mode(StrEnum):
    """Whether the study's metric is maximized or minimized."""

    MAX = "max"
    MIN = "min"

    def better(self, a: float, b: float) -> bool:
        """Whether value `a` is strictly better than value `b`."""
        return a > b if self is Mode.MAX else a < b

    @property
    def sql_order(self) -> str:
        """ORDER BY direction that puts the best value first."""
        return "DESC" if self is Mode.MAX else "ASC"

    def best_first(self, items: Iterable[T], value: Callable[[T], float]) -> list[T]:
        """Items sorted best value first; ties keep their order (a stable sort)."""
        return sorted(items, key=value, reverse=self is Mode.MAX)
