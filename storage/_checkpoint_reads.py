"""Checkpoints through the read-only path: sizes per stage (for `show`) and the best trial's
chosen checkpoint (for `best --out`). A database older than the checkpoints table has none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage._errors import NotFoundError
from storage._readonly import Reader, read_only
from storage._records import (
    CheckpointRecord,
    CheckpointTotals,
    StageRecord,
    StudyRecord,
    latest_files,
)
from storage._terms import Mode, Status


@dataclass(frozen=True)
class BestCheckpoint:
    """The best trial's chosen checkpoint: its best kept epoch (ties: the earliest)."""

    study: StudyRecord
    stage: StageRecord
    trial_id: int
    trial: int  # its number within the stage
    params: dict[str, Any]  # sampled params as stored (numbers as floats, choices as text)
    epoch: int
    value: float | None  # the metric at that epoch
    files: tuple[CheckpointRecord, ...]


def has_checkpoints_table(reader: Reader) -> bool:
    return reader.has_table("checkpoints")


_TOTALS_SQL = """
SELECT stage_id, count(*), sum(files), sum(size) FROM (
    SELECT t.stage_id AS stage_id, count(*) AS files, sum(c.bytes) AS size
    FROM checkpoints c JOIN trials t ON t.trial_id = c.trial_id
    WHERE t.stage_id IN (SELECT stage_id FROM stages WHERE study_id = :s)
    GROUP BY t.stage_id, c.trial_id, c.attempt, c.epoch
) per_checkpoint
GROUP BY stage_id
"""


def checkpoint_totals(reader: Reader, study_id: int) -> dict[int, CheckpointTotals]:
    """{stage_id: its checkpoint totals} for the study's stages that have checkpoints."""
    if not has_checkpoints_table(reader):
        return {}
    rows = reader.query(_TOTALS_SQL, {"s": study_id}).rows
    return {s: CheckpointTotals(int(n), int(f), int(b or 0)) for s, n, f, b in rows}


_CANDIDATES_SQL = """
SELECT c.trial_id, c.attempt, c.epoch, c.uri, c.bytes, c.sha256, m.value,
       t.number, t.best_value
FROM checkpoints c
JOIN trials t ON t.trial_id = c.trial_id
LEFT JOIN metrics m ON m.trial_id = c.trial_id AND m.attempt = c.attempt
     AND m.epoch = c.epoch AND m.name = :metric
WHERE t.stage_id = :stage AND t.status = :completed AND t.best_value IS NOT NULL
ORDER BY t.number, c.attempt, c.epoch, c.checkpoint_id
"""


def load_best_checkpoint(
    db: str, study: StudyRecord, stages: list[StageRecord], stage_id: int | None
) -> BestCheckpoint:
    """The chosen checkpoint of the best completed trial with checkpoints, in `stage_id` or
    else the latest stage that has any; NotFoundError (one line) when there is none."""
    with read_only(db) as reader:
        totals = checkpoint_totals(reader, study.study_id)
        if stage_id is None:
            with_files = [s for s in stages if s.stage_id in totals]
            if not with_files:
                raise NotFoundError(f"{reader.db}: study {study.name!r} has no checkpoints")
            stage = with_files[-1]
        else:
            stage = next((s for s in stages if s.stage_id == stage_id), None)  # type: ignore[assignment]
            if stage is None:
                known = ", ".join(str(s.stage_id) for s in stages) or "none"
                raise NotFoundError(
                    f"--stage {stage_id}: study {study.name!r} has no such stage (stages: {known})"
                )
        rows = reader.query(
            _CANDIDATES_SQL,
            {"metric": study.metric, "stage": stage.stage_id, "completed": Status.COMPLETED.value},
        ).rows
        if not rows:
            raise NotFoundError(
                f"{reader.db}: stage {stage.stage_id} of study {study.name!r} has no completed "
                "trial with checkpoints"
            )
        return _choose(reader, study, stage, rows)


def _pick_stage(
    reader: Reader,
    study: StudyRecord,
    stages: list[StageRecord],
    stage_id: int | None,
    totals: dict[int, CheckpointTotals],
) -> StageRecord:
    if stage_id is None:
        with_files = [s for s in stages if s.stage_id in totals]
        if not with_files:
            raise NotFoundError(f"{reader.db}: study {study.name!r} has no checkpoints")
        return with_files[-1]
    for stage in stages:
        if stage.stage_id == stage_id:
            return stage
    known = ", ".join(str(s.stage_id) for s in stages) or "none"
    raise NotFoundError(
        f"--stage {stage_id}: study {study.name!r} has no such stage (stages: {known})"
    )


def _choose(
    reader: Reader, study: StudyRecord, stage: StageRecord, rows: list[tuple[Any, ...]]
) -> BestCheckpoint:
    mode = Mode(study.mode)
    best_trial = mode.best_first(rows, lambda r: float(r[8]))[0][0]  # stable: lowest number
    mine = [r for r in rows if r[0] == best_trial]
    valued = [r for r in mine if r[6] is not None]
    chosen = mode.best_first(valued, lambda r: float(r[6]))[0] if valued else mine[-1]
    key = (chosen[1], chosen[2])
    files = tuple(CheckpointRecord(*r[:6]) for r in mine if (r[1], r[2]) == key)
    params = reader.query(
        "SELECT name, value, text FROM params WHERE trial_id = :t ORDER BY name", {"t": best_trial}
    ).rows
    return BestCheckpoint(
        study=study,
        stage=stage,
        trial_id=best_trial,
        trial=chosen[7],
        params={n: text if text is not None else value for n, value, text in params},
        epoch=chosen[2],
        value=chosen[6],
        files=files,
    )


@dataclass(frozen=True)
class TrialCheckpoint:
    """A trial with its latest kept checkpoint (for pictures drawn from its weights)."""

    trial_id: int
    stage_id: int
    trial: int  # its number within the stage
    status: str
    best_value: float | None
    params: dict[str, Any]  # sampled params as stored (numbers as floats, choices as text)
    epoch: int
    files: tuple[CheckpointRecord, ...]


_LATEST_SQL = """
SELECT c.trial_id, c.attempt, c.epoch, c.uri, c.bytes, c.sha256,
       t.stage_id, t.number, t.status, t.best_value
FROM checkpoints c JOIN trials t ON t.trial_id = c.trial_id
WHERE t.stage_id IN (SELECT stage_id FROM stages WHERE study_id = :s){where}
ORDER BY c.trial_id, c.attempt, c.epoch, c.checkpoint_id
"""


def load_trial_checkpoints(
    db: str, study: StudyRecord, *, stage_id: int | None = None, trial_id: int | None = None
) -> list[TrialCheckpoint]:
    """The study's trials (of one stage, or one trial) that have a kept checkpoint, each with
    its latest one, by trial id; none for a database older than the checkpoints table."""
    where, params = "", {"s": study.study_id}
    if stage_id is not None:
        where, params["stage"] = " AND t.stage_id = :stage", stage_id
    if trial_id is not None:
        where, params["trial"] = where + " AND t.trial_id = :trial", trial_id
    with read_only(db) as reader:
        if not has_checkpoints_table(reader):
            return []
        rows = reader.query(_LATEST_SQL.format(where=where), params).rows
        by_trial: dict[int, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_trial.setdefault(row[0], []).append(row)
        out = []
        for tid, found in by_trial.items():
            files = latest_files(CheckpointRecord(*r[:6]) for r in found)
            _, _, _, _, _, _, stage, number, status, best = found[-1]
            values = reader.query(
                "SELECT name, value, text FROM params WHERE trial_id = :t", {"t": tid}
            ).rows
            named = {n: text if text is not None else value for n, value, text in values}
            out.append(
                TrialCheckpoint(
                    tid, stage, number, status, best, named, files[0].epoch, tuple(files)
                )
            )
    return out
