"""The Store: the one write path to the database, used by the stage driver only."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    bindparam,
    case,
    column,
    delete,
    func,
    insert,
    select,
    table as sa_table,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage._engine import describe, open_engine, reason, session_scope
from storage._errors import RowError, StorageError
from storage._models import (
    Attempt,
    Checkpoint,
    Ensemble,
    EnsembleMember,
    Flag,
    MetricName,
    MetricValue,
    Param,
    Stage,
    Study,
    Trial,
    table,
)
from storage._records import (
    Batch,
    CheckpointRecord,
    FlagRecord,
    StageRecord,
    StudyRecord,
    TrialRecord,
    latest_files,
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


@dataclass(frozen=True)
class _SqliteFile:
    """The SQLite file a Store opened. Deleted or replaced under it, the Store would go on
    writing to the old file (an unlinked inode) and lose everything: every transaction checks
    first (one stat)."""

    path: str
    identity: tuple[int, int]  # (device, inode)

    @classmethod
    def of(cls, engine: Engine) -> _SqliteFile | None:
        if engine.dialect.name != "sqlite" or not engine.url.database:
            return None
        path = os.path.abspath(engine.url.database)
        try:
            found = os.stat(path)
        except OSError:  # a `file:` URI: not a path to check
            return None
        return cls(path, (found.st_dev, found.st_ino))

    def check(self, db: str) -> None:
        try:
            found = os.stat(self.path)
            identity: tuple[int, int] | None = (found.st_dev, found.st_ino)
        except FileNotFoundError:
            identity = None
        if identity != self.identity:
            raise StorageError(
                f"{db} was deleted or replaced while the stage ran: stopped (what this run "
                "wrote went with the old file); rerun the command to run on the file now there"
            )


class Store:
    """Opens (or creates) the database; every write goes through one of these methods."""

    def __init__(self, db: str) -> None:
        self.db = describe(db)
        self.engine = open_engine(db)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._file = _SqliteFile.of(self.engine)
        # Run inside every `record` transaction before its rows (a stage lease's check).
        self.fence: Callable[[Connection], None] | None = None
        self._name_ids: dict[str, int] = {}  # metric name -> id: ids never change once given

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> AbstractContextManager[Session]:
        if self._file is not None:
            self._file.check(self.db)
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
        epoch_budget: int | None = None,
    ) -> StageRecord:
        """A new stage of `n_trials` trials (default: one per config) with its first trials
        (`configs`, numbered from 0) as 'pending', in one transaction; `add_trials` inserts
        the rest. Bulk inserts: no ORM object per trial. With `epoch_budget`, `n_trials`
        counts the trials inserted so far (`add_trials` raises it)."""
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
            "epoch_budget": epoch_budget,
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
        """Insert trials numbered from `start` as 'pending' (one transaction); their ids.
        A stage that counted fewer trials (one with an epoch budget) now counts these."""
        with self._session() as s:
            conn = s.connection()
            if self.fence is not None:
                self.fence(conn)
            ids = _insert_trials(conn, stage_id, start, configs, seeds)
            count = start + len(configs)
            stage = _stages.c
            conn.execute(
                update(_stages)
                .where(stage.stage_id == stage_id, stage.n_trials < count)
                .values(n_trials=count)
            )
            return ids

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
            if self.fence is not None:
                self.fence(s.connection())
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
        every: int = 1,
    ) -> list[TrialRecord]:
        """The stage's trials in order (numbers after `after`, at most `limit`, every
        `every`-th number), with params."""
        query = (
            select(Trial)
            .where(Trial.stage_id == stage_id, Trial.number > after)
            .order_by(Trial.number)
            .limit(limit)
        )
        if every > 1:
            query = query.where(Trial.number % every == 0)
        if unfinished_only:
            query = query.where(Trial.status.not_in(FINAL_STATUSES))
        return self._trial_records(query)

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
        return self._trial_records(query)

    def _trial_records(self, query: Select[Trial]) -> list[TrialRecord]:
        """The trials a query selects, in its order, with their params."""
        with self._session() as s:
            trials = list(s.scalars(query))
            params = _params_of(s, [t.trial_id for t in trials])
            return [_trial_record(t, params.get(t.trial_id, {})) for t in trials]

    def status_counts(self, stage_id: int) -> dict[str, int]:
        with self._session() as s:
            rows = s.execute(
                select(Trial.status, func.count())
                .where(Trial.stage_id == stage_id)
                .group_by(Trial.status)
            )
            return {status: n for status, n in rows}

    def epochs_spent(self, stage_id: int) -> tuple[int, int]:
        """(trials ended, epochs they ran) of the stage, a trial that ended before its
        first epoch counting one (what an epoch budget charges: `asha.EpochBudget`)."""
        charged = case((Trial.epochs_run > 1, Trial.epochs_run), else_=1)
        with self._session() as s:
            ended, epochs = s.execute(
                select(func.count(), func.coalesce(func.sum(charged), 0)).where(
                    Trial.stage_id == stage_id, Trial.status.in_(FINAL_STATUSES)
                )
            ).one()
            return int(ended), int(epochs)

    def metric_rows(
        self, stage_id: int, name: str, max_epoch: int, trial_ids: Sequence[int] | None = None
    ) -> list[tuple[int, int, int, float | None]]:
        """(trial_id, attempt, epoch, value) of one metric of the stage's trials (or of these
        trials), epochs up to `max_epoch` (ASHA: its rung board on resume, its ranking at a
        common epoch)."""
        query = (
            select(_metrics.c.trial_id, _metrics.c.attempt, _metrics.c.epoch, _metrics.c.value)
            .join(Trial, Trial.trial_id == _metrics.c.trial_id)
            .where(
                Trial.stage_id == stage_id,
                _metrics.c.name == name,
                _metrics.c.epoch <= max_epoch,
            )
            .order_by(_metrics.c.trial_id, _metrics.c.attempt, _metrics.c.epoch)
        )
        if trial_ids is None:
            with self._session() as s:
                return [(t, a, e, v) for t, a, e, v in s.execute(query)]
        rows = []
        with self._session() as s:
            for ids in _in_lists(trial_ids):
                chunk = query.where(_metrics.c.trial_id.in_(ids))
                rows += [(t, a, e, v) for t, a, e, v in s.execute(chunk)]
        return sorted(rows)

    def record(self, batch: Batch) -> None:
        """Write one batch of results in a single transaction."""
        if not len(batch):
            return
        name_ids: dict[str, int] = {}
        with self._session() as s, _rows_refused(self.db):
            conn = s.connection()
            if self.fence is not None:
                self.fence(conn)
            if batch.started:
                conn.execute(_START, batch.started)
            if batch.metrics:
                name_ids = self._metric_name_ids(conn, {row["name"] for row in batch.metrics})
                conn.execute(_insert_values, _value_rows(batch.metrics, name_ids))
            if batch.started or batch.ended:
                _write_attempts(conn, batch.started, batch.ended)
            if batch.finished:  # after the attempts: the trial takes its last attempt's node
                conn.execute(_FINISH, batch.finished)
            if batch.checkpoints:
                conn.execute(table(Checkpoint).insert(), batch.checkpoints)
        self._name_ids.update(name_ids)  # only once committed: a rolled-back id is no id

    def _metric_name_ids(self, conn: Connection, names: set[str]) -> dict[str, int]:
        """{name: name_id} for these names, new names added to `metric_names`."""
        known = {name: self._name_ids[name] for name in names if name in self._name_ids}
        missing = names - known.keys()
        if missing:
            found = _name_ids_in(conn, missing)
            if new := missing - found.keys():
                conn.execute(_insert_ignoring_duplicates(conn), [{"name": n} for n in sorted(new)])
                found |= _name_ids_in(conn, new)  # another driver may have given some first
            known |= found
        return known

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoints(self, trial_id: int) -> list[CheckpointRecord]:
        """Every recorded checkpoint file of the trial, the latest (attempt, epoch) last."""
        return self._checkpoints(Checkpoint.trial_id == trial_id)

    def stage_checkpoints(self, stage_id: int) -> list[CheckpointRecord]:
        """Every recorded checkpoint file of the stage's trials, by trial, latest last."""
        in_stage = select(Trial.trial_id).where(Trial.stage_id == stage_id)
        return self._checkpoints(Checkpoint.trial_id.in_(in_stage))

    def latest_checkpoint(self, trial_id: int) -> list[CheckpointRecord]:
        """The files of the trial's latest checkpoint (empty: it has none)."""
        return latest_files(self.checkpoints(trial_id))

    def delete_checkpoints(self, uris: Iterable[str]) -> int:
        """Forget these files (their rows); the caller removes the files afterwards, so a
        crash in between leaves a file no row names, never a row naming no file."""
        wanted = list(uris)
        if not wanted:
            return 0
        deleted = 0
        with self._session() as s:
            for chunk in _in_lists(wanted):
                done = s.execute(delete(Checkpoint).where(Checkpoint.uri.in_(chunk)))
                deleted += int(getattr(done, "rowcount", 0) or 0)
        return deleted

    # -- ensembles ------------------------------------------------------------------------
    def record_ensemble(
        self,
        study_id: int,
        stage_id: int,
        kind: str,
        split: str,
        accuracy: float,
        members: Sequence[tuple[int, int, float]],
    ) -> int:
        """An ensemble and its members (trial_id, epoch, accuracy) in one transaction; its id."""
        with self._session() as s:
            row = Ensemble(
                study_id=study_id,
                stage_id=stage_id,
                kind=kind,
                size=len(members),
                split=split,
                accuracy=accuracy,
                best_member_accuracy=max(m[2] for m in members),
                created_at=now(),
            )
            s.add(row)
            s.flush()
            s.execute(
                table(EnsembleMember).insert(),
                [
                    {"ensemble_id": row.ensemble_id, "trial_id": t, "epoch": e, "accuracy": a}
                    for t, e, a in members
                ],
            )
            return row.ensemble_id

    def checkpoint_values(
        self, stage_id: int, metric: str
    ) -> list[tuple[CheckpointRecord, float | None]]:
        """The stage's checkpoint files, each with the metric's value at its epoch (None: NaN
        or not recorded), by trial, latest last: what retention ranks."""
        at_epoch = (
            (_metrics.c.trial_id == Checkpoint.trial_id)
            & (_metrics.c.attempt == Checkpoint.attempt)
            & (_metrics.c.epoch == Checkpoint.epoch)
            & (_metrics.c.name == metric)
        )
        query = (
            select(Checkpoint, _metrics.c.value)
            .join(Trial, Trial.trial_id == Checkpoint.trial_id)
            .outerjoin(_metrics, at_epoch)
            .where(Trial.stage_id == stage_id)
            .order_by(
                Checkpoint.trial_id, Checkpoint.attempt, Checkpoint.epoch, Checkpoint.checkpoint_id
            )
        )
        with self._session() as s:
            return [(_checkpoint_record(c), value) for c, value in s.execute(query)]

    def final_results(self, trial_ids: Iterable[int]) -> dict[int, tuple[str, float | None]]:
        """(status, best value) of those of these trials that have a final status."""
        wanted = sorted(set(trial_ids))
        if not wanted:
            return {}
        query = select(Trial.trial_id, Trial.status, Trial.best_value).where(
            Trial.trial_id.in_(wanted), Trial.status.in_(FINAL_STATUSES)
        )
        with self._session() as s:
            return {tid: (status, value) for tid, status, value in s.execute(query)}

    def metric_lineage(
        self, trial_id: int, metric: str, attempt: int, epoch: int
    ) -> list[tuple[int, float | None]]:
        """(epoch, value) of epochs 1..`epoch` as the checkpoint made in `attempt` at `epoch`
        saw them: per epoch, the latest attempt up to `attempt` that recorded it."""
        query = (
            select(_metrics.c.epoch, _metrics.c.attempt, _metrics.c.value)
            .where(
                _metrics.c.trial_id == trial_id,
                _metrics.c.name == metric,
                _metrics.c.attempt <= attempt,
                _metrics.c.epoch <= epoch,
            )
            .order_by(_metrics.c.epoch, _metrics.c.attempt)
        )
        with self._session() as s:
            latest = {e: v for e, _, v in s.execute(query)}  # a later attempt overwrites
        return sorted(latest.items())

    def _checkpoints(self, where: Any) -> list[CheckpointRecord]:
        query = (
            select(Checkpoint)
            .where(where)
            .order_by(
                Checkpoint.trial_id,
                Checkpoint.attempt,
                Checkpoint.epoch,
                Checkpoint.checkpoint_id,
            )
        )
        with self._session() as s:
            return [_checkpoint_record(r) for r in s.scalars(query)]


_names = table(MetricName)
_metrics = sa_table(  # the view: what users and these reads see, names as text
    "metrics", column("trial_id"), column("attempt"), column("epoch"), column("name"),
    column("value"),
)  # fmt: skip
_insert_values = insert(table(MetricValue))


def _name_ids_in(conn: Connection, names: set[str]) -> dict[str, int]:
    rows = conn.execute(select(_names.c.name, _names.c.name_id).where(_names.c.name.in_(names)))
    return {name: name_id for name, name_id in rows}


def _insert_ignoring_duplicates(conn: Connection) -> Any:
    """INSERT INTO metric_names that skips a name another driver inserted meanwhile."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(_names).on_conflict_do_nothing()
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(_names).on_conflict_do_nothing()
    if dialect in ("mysql", "mariadb"):
        return insert(_names).prefix_with("IGNORE")
    return insert(_names)


def _value_rows(metrics: list[dict[str, Any]], name_ids: dict[str, int]) -> list[dict[str, Any]]:
    """The batch's metric rows as `metric_values` rows (the batch is left as it is: a failed
    write may be tried again)."""
    return [
        {
            "trial_id": row["trial_id"],
            "attempt": row["attempt"],
            "epoch": row["epoch"],
            "name_id": name_ids[row["name"]],
            "value": _finite_or_none(row["value"]),
        }
        for row in metrics
    ]


def _checkpoint_record(row: Checkpoint) -> CheckpointRecord:
    return CheckpointRecord(row.trial_id, row.attempt, row.epoch, row.uri, row.bytes, row.sha256)


@contextmanager
def _rows_refused(db: str) -> Iterator[None]:
    """A row the database (or its driver, encoding it) refuses, as a RowError; other errors
    (locked, disk full, connection lost) are the database's and stay StorageErrors."""
    try:
        yield
    except (IntegrityError, DataError) as exc:
        raise RowError(db, reason(exc)) from None
    except (ValueError, TypeError, OverflowError) as exc:  # raised while binding a value
        raise RowError(db, f"{type(exc).__name__}: {exc}") from None


_trials = table(Trial)
_attempts = table(Attempt)
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
        # none when the last attempt's start never reached the driver (its worker died first)
        node_id=select(_attempts.c.node_id)
        .where(
            _attempts.c.trial_id == bindparam("tid"),
            _attempts.c.attempt == bindparam("attempts"),
        )
        .scalar_subquery(),
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


IN_LIST = 500  # values per IN (...) list: within every database's bind-parameter limit


def _in_lists(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """`values` in slices short enough for one IN (...) list."""
    return (values[i : i + IN_LIST] for i in range(0, len(values), IN_LIST))


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
        wheres = [Param.trial_id.in_(ids) for ids in _in_lists(trial_ids)]
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
        epoch_budget=row.epoch_budget,
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
