"""The Store: the one write path to the database, used by the stage driver only."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, text as sql, update
from sqlalchemy.orm import Session, sessionmaker

from storage._engine import describe, open_engine, session_scope
from storage._errors import StorageError
from storage._models import Attempt, Flag, Metric, Param, Stage, Study, Trial, table
from storage._records import (
    Batch,
    FlagRecord,
    ParamTrend,
    StageRecord,
    StageTally,
    StudyRecord,
    TrialRecord,
)
from storage._terms import FINAL_STATUSES, Mode


def now() -> datetime:
    """UTC now without a timezone, as every timestamp column stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


def _param_row(trial_id: int, name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool | int | float):
        return {"trial_id": trial_id, "name": name, "value": float(value), "text": None}
    return {"trial_id": trial_id, "name": name, "value": None, "text": str(value)}


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


class Store:
    """Opens (or creates) the database; every write goes through one of these methods."""

    def __init__(self, db: str) -> None:
        self.db = describe(db)
        self.engine = open_engine(db)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> AbstractContextManager[Session]:
        return session_scope(self._sessions, self.db)

    # -- studies and stages -------------------------------------------------------------
    def study(self, name: str) -> StudyRecord | None:
        with self._session() as s:
            row = s.scalars(select(Study).where(Study.name == name)).one_or_none()
            return _study_record(row) if row else None

    def studies(self) -> list[StudyRecord]:
        with self._session() as s:
            rows = s.scalars(select(Study).order_by(Study.study_id))
            return [_study_record(r) for r in rows]

    def ensure_study(self, name: str, trainable: str, metric: str, mode: str) -> StudyRecord:
        """The study of this name, created if new; a changed metric or mode is refused."""
        existing = self.study(name)
        if existing is None:
            with self._session() as s:
                row = Study(
                    name=name, trainable=trainable, metric=metric, mode=mode, created_at=now()
                )
                s.add(row)
                s.flush()
                return _study_record(row)
        if (existing.metric, existing.mode) != (metric, mode):
            raise StorageError(
                f"{self.db}: study {name!r} was run with metric={existing.metric} "
                f"mode={existing.mode}, not {metric}/{mode}: rename the study or use another --db"
            )
        return existing

    def begin_stage(
        self,
        study_id: int,
        kind: str,
        *,
        seed: int,
        epochs: int,
        ranges: dict[str, Any],
        fixed: dict[str, Any],
        configs: list[dict[str, Any]],
        seeds: list[int],
        parent_stage_id: int | None = None,
        n_trials: int | None = None,
    ) -> StageRecord:
        """A new stage of `n_trials` trials (default: one per config) with its first trials
        (`configs`, numbered from 0) as 'pending', in one transaction; `add_trials` inserts
        the rest. Bulk inserts: no ORM object per trial."""
        values = {
            "study_id": study_id,
            "kind": kind,
            "parent_stage_id": parent_stage_id,
            "status": "running",
            "seed": seed,
            "epochs": epochs,
            "n_trials": len(configs) if n_trials is None else n_trials,
            "ranges": ranges,
            "fixed": fixed,
            "proposal": None,
            "created_at": now(),
        }
        with self._session() as s:
            conn = s.connection()
            created = conn.execute(insert(_stages).values(values))
            stage_id = created.inserted_primary_key[0]  # type: ignore[index]
            _insert_trials(conn, stage_id, 0, configs, seeds)
            row = conn.execute(select(_stages).where(_stages.c.stage_id == stage_id)).one()
            return _stage_record(row)

    def add_trials(
        self, stage_id: int, start: int, configs: list[dict[str, Any]], seeds: list[int]
    ) -> list[int]:
        """Insert trials numbered from `start` as 'pending' (one transaction); their ids."""
        with self._session() as s:
            return _insert_trials(s.connection(), stage_id, start, configs, seeds)

    def stages(self, study_id: int) -> list[StageRecord]:
        with self._session() as s:
            rows = s.scalars(
                select(Stage).where(Stage.study_id == study_id).order_by(Stage.stage_id)
            )
            return [_stage_record(r) for r in rows]

    def stage(self, stage_id: int) -> StageRecord | None:
        with self._session() as s:
            row = s.get(Stage, stage_id)
            return _stage_record(row) if row else None

    def finish_stage(
        self,
        stage_id: int,
        *,
        proposal: dict[str, Any] | None = None,
        flags: Sequence[FlagRecord] = (),
    ) -> None:
        """Mark the stage finished, with the proposal for the next stage and its edge flags."""
        with self._session() as s:
            s.execute(
                update(Stage)
                .where(Stage.stage_id == stage_id)
                .values(status="finished", finished_at=now(), proposal=proposal)
            )
            s.add_all(Flag(stage_id=stage_id, **asdict(f)) for f in flags)

    def flags(self, stage_id: int) -> list[FlagRecord]:
        with self._session() as s:
            rows = s.scalars(select(Flag).where(Flag.stage_id == stage_id).order_by(Flag.flag_id))
            return [FlagRecord(r.param, r.side, r.value, r.position, r.message) for r in rows]

    # -- trials ---------------------------------------------------------------------------
    def trials(
        self,
        stage_id: int,
        *,
        unfinished_only: bool = False,
        after: int = -1,
        limit: int | None = None,
    ) -> list[TrialRecord]:
        """The stage's trials in order (numbers after `after`, at most `limit`), with params."""
        query = (
            select(Trial)
            .where(Trial.stage_id == stage_id, Trial.number > after)
            .order_by(Trial.number)
            .limit(limit)
        )
        if unfinished_only:
            query = query.where(Trial.status.not_in(FINAL_STATUSES))
        with self._session() as s:
            trials = list(s.scalars(query))
            params = _params_of(s, [t.trial_id for t in trials])
            return [_trial_record(t, params.get(t.trial_id, {})) for t in trials]

    def top_trials(self, stage_id: int, mode: str, k: int) -> list[TrialRecord]:
        """The stage's best `k` completed trials, best first (ties: the lowest number); read
        through the index (stage_id, status, best_value): k rows, however large the stage."""
        value = _trials.c.best_value
        query = (
            select(Trial)
            .where(Trial.stage_id == stage_id, Trial.status == "completed", value.is_not(None))
            .order_by(value.desc() if Mode(mode) is Mode.MAX else value.asc(), Trial.number)
            .limit(k)
        )
        with self._session() as s:
            trials = list(s.scalars(query))
            params = _params_of(s, [t.trial_id for t in trials])
            return [_trial_record(t, params.get(t.trial_id, {})) for t in trials]

    def stage_tally(
        self, stage_id: int, mode: str, bands: Mapping[str, tuple[float, float]]
    ) -> StageTally:
        """Counts by status, ranked trials, and per numeric parameter (named in `bands`, with
        the values bounding its low and high band) its trend over the completed trials:
        computed by the database, a few rows back however large the stage."""
        counts = self.status_counts(stage_id)
        sign = 1.0 if Mode(mode) is Mode.MAX else -1.0
        with self._session() as s:
            conn = s.connection()
            ranked = conn.execute(_RANKED, {"stage": stage_id}).scalar_one()
            trends = {
                name: _trend(conn, stage_id, name, sign, low, high)
                for name, (low, high) in bands.items()
            }
        return StageTally(counts, int(ranked), trends)

    def status_counts(self, stage_id: int) -> dict[str, int]:
        with self._session() as s:
            rows = s.execute(
                select(Trial.status, func.count())
                .where(Trial.stage_id == stage_id)
                .group_by(Trial.status)
            )
            return {status: n for status, n in rows}

    def record(self, batch: Batch) -> None:
        """Write one batch of results in a single transaction."""
        if not len(batch):
            return
        with self._session() as s:
            conn = s.connection()
            if batch.started:
                conn.execute(_START, batch.started)
            if batch.metrics:
                for row in batch.metrics:
                    row["value"] = _finite_or_none(row["value"])
                conn.execute(table(Metric).insert(), batch.metrics)
            if batch.finished:
                conn.execute(_FINISH, batch.finished)
            if batch.started or batch.ended:
                _write_attempts(conn, batch.started, batch.ended)


_trials = table(Trial)
_START = (
    update(_trials)
    .where(_trials.c.trial_id == bindparam("tid"))
    .values(
        status="running",
        attempts=bindparam("attempts"),
        node_id=bindparam("node_id"),
        started_at=bindparam("started_at"),
    )
)
_FINISH = (
    update(_trials)
    .where(_trials.c.trial_id == bindparam("tid"))
    .values(
        status=bindparam("status"),
        attempts=bindparam("attempts"),
        error=bindparam("error"),
        best_value=bindparam("best_value"),
        best_epoch=bindparam("best_epoch"),
        epochs_run=bindparam("epochs_run"),
        finished_at=bindparam("finished_at"),
    )
)

_stages = table(Stage)
_params = table(Param)


def _insert_trials(
    conn: Connection, stage_id: int, start: int, configs: list[dict[str, Any]], seeds: list[int]
) -> list[int]:
    """Trials `start`, `start + 1`, ... as 'pending' with their params; their ids in order."""
    if not configs:
        return []
    numbers = range(start, start + len(configs))
    conn.execute(
        insert(_trials),
        [
            {"stage_id": stage_id, "number": n, "status": "pending", "seed": seed}
            for n, seed in zip(numbers, seeds, strict=True)
        ],
    )
    found = conn.execute(
        select(_trials.c.number, _trials.c.trial_id).where(
            _trials.c.stage_id == stage_id, _trials.c.number.between(start, numbers[-1])
        )
    )
    ids = {number: trial_id for number, trial_id in found}
    trial_ids = [ids[n] for n in numbers]
    rows = [
        _param_row(trial_id, name, value)
        for trial_id, config in zip(trial_ids, configs, strict=True)
        for name, value in config.items()
    ]
    if rows:
        conn.execute(insert(_params), rows)
    return trial_ids


_RANKED = sql(
    "SELECT count(*) FROM trials "
    "WHERE stage_id = :stage AND status = 'completed' AND best_value IS NOT NULL"
)
# Spearman's rank correlation from sums of doubled average ranks (RANK() is a tie's lowest
# rank, COUNT(*) up to the current row its highest: one sort per column), plus the trials in
# each band.
_TREND = sql("""
WITH c AS (
  SELECT p.value AS x, :sign * t.best_value AS y
  FROM trials t JOIN params p ON p.trial_id = t.trial_id AND p.name = :name
  WHERE t.stage_id = :stage AND t.status = 'completed' AND t.best_value IS NOT NULL
    AND p.value IS NOT NULL
), r AS (
  SELECT x, RANK() OVER wx + COUNT(*) OVER wx AS rx, RANK() OVER wy + COUNT(*) OVER wy AS ry
  FROM c WINDOW wx AS (ORDER BY x), wy AS (ORDER BY y)
)
SELECT count(*), sum(1.0 * rx), sum(1.0 * ry),
       sum(1.0 * rx * ry), sum(1.0 * rx * rx), sum(1.0 * ry * ry),
       sum(CASE WHEN x < :low THEN 1 ELSE 0 END), sum(CASE WHEN x > :high THEN 1 ELSE 0 END)
FROM r
""")


def _trend(
    conn: Connection, stage_id: int, name: str, sign: float, low: float, high: float
) -> ParamTrend:
    row = conn.execute(
        _TREND, {"stage": stage_id, "name": name, "sign": sign, "low": low, "high": high}
    ).one()
    n, sx, sy, sxy, sxx, syy, below, above = (float(v or 0) for v in row)
    cov, vx, vy = sxy - sx * sy / (n or 1), sxx - sx * sx / (n or 1), syy - sy * sy / (n or 1)
    varies = vx > 1e-12 * sxx and vy > 1e-12 * syy  # else a column is all ties (rounding)
    rho = cov / math.sqrt(vx * vy) if varies else 0.0
    return ParamTrend(int(n), rho, int(below or 0), int(above or 0))


_attempts = table(Attempt)
_ATTEMPT_END = (
    update(_attempts)
    .where(_attempts.c.trial_id == bindparam("tid"), _attempts.c.attempt == bindparam("n"))
    .values(
        outcome=bindparam("outcome"),
        reason=bindparam("reason"),
        finished_at=bindparam("finished_at"),
    )
)


def _write_attempts(
    conn: Connection, started: list[dict[str, Any]], ended: list[dict[str, Any]]
) -> None:
    """A row per attempt started, complete when it also ended in this batch (short trials: one
    INSERT, no UPDATE); attempts started in an earlier batch are closed by an UPDATE."""
    ends = {(row["tid"], row["n"]): row for row in ended}
    rows = [_attempt_row(row["tid"], row["attempts"], row, ends) for row in started]
    if ends:
        rows += _unstarted(conn, ends)
    if rows:
        conn.execute(insert(_attempts), rows)
    if ends:
        conn.execute(_ATTEMPT_END, list(ends.values()))


def _attempt_row(
    trial_id: int, attempt: int, start: dict[str, Any], ends: dict[tuple[int, int], Any]
) -> dict[str, Any]:
    end = ends.pop((trial_id, attempt), {})
    return {
        "trial_id": trial_id,
        "attempt": attempt,
        "node_id": start.get("node_id"),
        "started_at": start.get("started_at"),
        "finished_at": end.get("finished_at"),
        "outcome": end.get("outcome"),
        "reason": end.get("reason"),
    }


def _unstarted(conn: Connection, ends: dict[tuple[int, int], Any]) -> list[dict[str, Any]]:
    """Rows for attempts that ended with no start on record (their task failed, or their worker
    died, before the trial's start reached the driver); taken out of `ends`."""
    trial_ids = {tid for tid, _ in ends}
    found = conn.execute(
        select(_attempts.c.trial_id, _attempts.c.attempt).where(_attempts.c.trial_id.in_(trial_ids))
    )
    known = {(tid, attempt) for tid, attempt in found}
    return [_attempt_row(tid, n, {}, ends) for tid, n in sorted(set(ends) - known)]


def _params_of(session: Any, trial_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Params of these trials: by id range when the ids are dense (a stage's trials in order),
    else by id (the top N of a large stage are scattered over its whole id range)."""
    out: dict[int, dict[str, Any]] = {}
    if not trial_ids:
        return out
    low, high = min(trial_ids), max(trial_ids)
    if high - low < 2 * len(trial_ids):
        wheres = [Param.trial_id.between(low, high)]
    else:
        wheres = [Param.trial_id.in_(trial_ids[i : i + 500]) for i in range(0, len(trial_ids), 500)]
    wanted = set(trial_ids)
    for where in wheres:
        rows = session.execute(
            select(Param.trial_id, Param.name, Param.value, Param.text).where(where)
        )
        for trial_id, name, value, text in rows:
            if trial_id in wanted:
                out.setdefault(trial_id, {})[name] = text if text is not None else value
    return out


def _study_record(row: Study) -> StudyRecord:
    return StudyRecord(row.study_id, row.name, row.trainable, row.metric, row.mode)


def _stage_record(row: Stage | Row[Any]) -> StageRecord:
    return StageRecord(
        stage_id=row.stage_id,
        study_id=row.study_id,
        kind=row.kind,
        parent_stage_id=row.parent_stage_id,
        status=row.status,
        seed=row.seed,
        epochs=row.epochs,
        n_trials=row.n_trials,
        ranges=row.ranges,
        fixed=row.fixed,
        proposal=row.proposal,
    )


def _trial_record(row: Trial, params: dict[str, Any]) -> TrialRecord:
    return TrialRecord(
        trial_id=row.trial_id,
        stage_id=row.stage_id,
        number=row.number,
        status=row.status,
        seed=row.seed,
        attempts=row.attempts,
        params=params,
        best_value=row.best_value,
        best_epoch=row.best_epoch,
        epochs_run=row.epochs_run,
        error=row.error,
        node_id=row.node_id,
    )
