"""Frozen records: rows leave storage as these, never as ORM objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage._terms import (
    FINAL_STATUSES,  # noqa: F401  (re-exported)
    AttemptOutcome,
)


@dataclass(frozen=True)
class StudyRecord:
    study_id: int
    name: str
    trainable: str
    metric: str
    mode: str


@dataclass(frozen=True)
class StageRecord:
    stage_id: int
    study_id: int
    kind: str
    parent_stage_id: int | None
    status: str
    seed: int
    epochs: int
    n_trials: int
    ranges: dict[str, Any]
    fixed: dict[str, Any]
    proposal: dict[str, Any] | None


@dataclass(frozen=True)
class TrialRecord:
    trial_id: int
    stage_id: int
    number: int
    status: str
    seed: int
    attempts: int
    params: dict[str, Any]
    best_value: float | None = None
    best_epoch: int | None = None
    epochs_run: int = 0
    error: str | None = None
    node_id: str | None = None


@dataclass(frozen=True)
class FlagRecord:
    param: str
    side: str
    value: float | None
    position: float | None
    message: str


@dataclass(frozen=True)
class ParamTrend:
    """A numeric parameter across a stage's completed trials: what the edge-flag rule weighs
    besides the top N (counted by the database, so analysis never loads every trial)."""

    trials: int  # completed trials with a value for the parameter
    rho: float  # Spearman rank correlation of the value with the metric (better = higher)
    low_band: int  # of them, with a value below the low band's limit
    high_band: int  # ... above the high band's limit


@dataclass(frozen=True)
class StageTally:
    """A stage's trials as counts: by status, ranked (completed with a value), and the
    trend of each numeric parameter."""

    counts: dict[str, int]
    ranked: int
    trends: dict[str, ParamTrend]


@dataclass(frozen=True)
class StageSummary:
    """What `hpsearch show` reports of one stage: counted and ranked by the database."""

    stage: StageRecord
    counts: dict[str, int]  # trials by status, statuses in alphabetical order
    best: TrialRecord | None  # the best completed trial (ties: the lowest number)
    flags: tuple[FlagRecord, ...]


@dataclass(frozen=True)
class StudySummary:
    study: StudyRecord
    stages: tuple[StageSummary, ...]


@dataclass
class Batch:
    """Results gathered by the driver, written in one transaction by `Store.record`.

    A trial's row describes its last attempt; each attempt also has its own `attempts` row:
    `start` opens it, `finish` closes it with the trial's final status, `lose` with `lost`.
    """

    started: list[dict[str, Any]] = field(default_factory=list)  # trial_id, attempts, node_id
    metrics: list[dict[str, Any]] = field(default_factory=list)  # trial_id, attempt, epoch, ...
    finished: list[dict[str, Any]] = field(default_factory=list)  # trial_id, status, error, ...
    ended: list[dict[str, Any]] = field(default_factory=list)  # attempt endings: outcome, reason

    def __len__(self) -> int:
        return len(self.started) + len(self.metrics) + len(self.finished) + len(self.ended)

    def start(self, trial_id: int, attempt: int, node_id: str | None, at: datetime) -> None:
        """The attempt began on this node: the trial is running, the attempt's row is new."""
        self.started.append(
            {"tid": trial_id, "attempts": attempt, "node_id": node_id, "started_at": at}
        )

    def lose(self, trial_id: int, attempt: int, reason: str, at: datetime) -> None:
        """The attempt's worker or node died: it ends `lost`; the trial is retried or failed
        by a later `finish` (its own row is left as it is)."""
        self._end(trial_id, attempt, AttemptOutcome.LOST, reason, at)

    def _end(
        self, trial_id: int, attempt: int, outcome: str, reason: str | None, at: datetime
    ) -> None:
        self.ended.append(
            {
                "tid": trial_id,
                "n": attempt,
                "outcome": str(outcome),
                "reason": reason,
                "finished_at": at,
            }
        )

    def finish(
        self,
        trial_id: int,
        status: str,
        *,
        attempt: int,
        error: str | None,
        best: tuple[float, int] | None,
        epochs_run: int,
        at: datetime,
    ) -> None:
        """The trial ended with a final status in this attempt (which ends with it)."""
        value, epoch = best if best is not None else (None, None)
        self._end(trial_id, attempt, AttemptOutcome(status), error, at)
        self.finished.append(
            {
                "tid": trial_id,
                "status": status,
                "attempts": attempt,
                "error": error,
                "best_value": value,
                "best_epoch": epoch,
                "epochs_run": epochs_run,
                "finished_at": at,
            }
        )


# The columns of `load_trials` (before one column per parameter) and of `load_metrics`.
TRIAL_COLUMNS = [
    "trial_id",
    "stage_id",
    "stage_kind",
    "trial",
    "status",
    "best_value",
    "best_epoch",
    "epochs_run",
    "attempts",
    "seed",
    "node_id",
    "error",
    "started_at",
    "finished_at",
]
METRIC_COLUMNS = ["trial_id", "stage_id", "trial", "attempt", "epoch", "name", "value"]


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
