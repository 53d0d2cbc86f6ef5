"""Frozen records: rows leave storage as these, never as ORM objects."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol

from storage._terms import (
    FINAL_STATUSES,  # noqa: F401  (re-exported)
    AttemptOutcome,
)


class StoredFileLike(Protocol):
    """A file written to the artifact store (storage._artifacts.StoredFile)."""

    @property
    def uri(self) -> str: ...
    @property
    def bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...


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
    epoch_budget: int | None = None  # draws trials until this many epochs are spent


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
class CheckpointRecord:
    """One recorded file of a trial's checkpoint at one epoch (`uri` absolute)."""

    trial_id: int
    attempt: int
    epoch: int
    uri: str
    bytes: int
    sha256: str

    @property
    def name(self) -> str:
        """The file's name in the checkpoint directory the trainable wrote."""
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


def latest_files(files: Iterable[CheckpointRecord]) -> list[CheckpointRecord]:
    """The files of the latest (attempt, epoch) among one trial's checkpoint files."""
    files = list(files)
    if not files:
        return []
    last = max((f.attempt, f.epoch) for f in files)
    return [f for f in files if (f.attempt, f.epoch) == last]


@dataclass(frozen=True)
class FlagRecord:
    param: str
    side: str
    value: float | None
    position: float | None
    message: str


@dataclass(frozen=True)
class CheckpointTotals:
    """A stage's recorded checkpoints: how many (trial, attempt, epoch), files, bytes."""

    checkpoints: int = 0
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class StageSummary:
    """What `hpsearch show` reports of one stage: counted and ranked by the database."""

    stage: StageRecord
    counts: dict[str, int]  # trials by status, statuses in alphabetical order
    best: TrialRecord | None  # the best completed trial (ties: the lowest number)
    flags: tuple[FlagRecord, ...]
    checkpoints: CheckpointTotals = CheckpointTotals()


@dataclass(frozen=True)
class MemberRecord:
    trial_id: int
    trial: int  # number in its stage
    epoch: int
    accuracy: float


@dataclass(frozen=True)
class EnsembleRecord:
    """A recorded ensemble (`ensembles`) with its members (`ensemble_members`): what
    `hpsearch ensemble` and `Study.ensemble` return, and `show` reads back. `accuracy` is that
    of the averaged probabilities on `split`; `stage_id` the stage whose trials are the
    members."""

    ensemble_id: int
    stage_id: int
    kind: str
    size: int
    split: str
    accuracy: float
    best_member_accuracy: float
    members: tuple[MemberRecord, ...]
    note: str | None = None  # when built: e.g. fewer members than asked for, and why

    @property
    def gain(self) -> float:
        """The ensemble's accuracy minus its best member's."""
        return self.accuracy - self.best_member_accuracy


@dataclass(frozen=True)
class StudySummary:
    study: StudyRecord
    stages: tuple[StageSummary, ...]
    ensembles: tuple[EnsembleRecord, ...] = ()  # in the order they were built


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
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # one row per file

    def __len__(self) -> int:
        return (
            len(self.started)
            + len(self.metrics)
            + len(self.finished)
            + len(self.ended)
            + len(self.checkpoints)
        )

    def checkpoint(
        self, trial_id: int, attempt: int, epoch: int, files: Iterable[StoredFileLike]
    ) -> None:
        """Epoch `epoch`'s checkpoint of this attempt: files already in the artifact store."""
        self.checkpoints.extend(
            {
                "trial_id": trial_id,
                "attempt": attempt,
                "epoch": epoch,
                "uri": f.uri,
                "bytes": f.bytes,
                "sha256": f.sha256,
            }
            for f in files
        )

    def by_trial(self) -> dict[int, Batch]:
        """The batch split into one batch per trial, each with that trial's rows in order."""
        parts: dict[int, Batch] = {}
        for rows in fields(self):
            for row in getattr(self, rows.name):
                getattr(parts.setdefault(_trial_of(row), Batch()), rows.name).append(row)
        return parts

    def without(self, trial_ids: set[int]) -> Batch:
        """The batch without the rows of these trials."""
        kept = Batch()
        for rows in fields(self):
            getattr(kept, rows.name).extend(
                row for row in getattr(self, rows.name) if _trial_of(row) not in trial_ids
            )
        return kept

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


def _trial_of(row: dict[str, Any]) -> int:
    """The trial a batch row belongs to: every list of a Batch keys it `tid` or `trial_id`."""
    return int(row["tid"] if "tid" in row else row["trial_id"])


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
