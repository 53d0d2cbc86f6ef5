"""Read-only queries of the dashboard (`hpsearch ui`): small answers, computed in SQL.

Every function takes an open `Reader` (storage's read-only connection), so the dashboard
never holds a writing connection. Columns and statuses are the schema's own words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage._errors import QueryTimeout, StorageError
from storage._queries import _stage, _study, stage_columns
from storage._readonly import Reader, check_query, read_only
from storage._records import QueryResult, StageRecord, StudyRecord
from storage._terms import FINAL_STATUSES, Mode, Status

__all__ = [
    "ParamFilter",
    "Points",
    "TrialsPage",
    "curves",
    "live_update",
    "points",
    "run_sql_limited",
    "top_trial_ids",
    "studies_overview",
    "study_by_name",
    "study_stages",
    "trials_page",
]

EPOCH_FEED_TRIALS = 20  # the live view draws the curves of the trials running and just finished
EPOCH_FEED_ROWS = 20_000  # ... at most this many of their epochs per answer
TRIAL_SORT_COLUMNS = ("trial_id", "stage_id", "number", "status", "best_value", "best_epoch")


def _best(mode: str) -> str:
    return "max" if Mode(mode) is Mode.MAX else "min"


def study_by_name(reader: Reader, name: str) -> StudyRecord:
    return _study(reader, name)


def study_stages(reader: Reader, study: StudyRecord) -> list[StageRecord]:
    rows = reader.query(
        f"SELECT {stage_columns(reader)} FROM stages WHERE study_id = :s ORDER BY stage_id",
        {"s": study.study_id},
    ).rows
    return [_stage(r) for r in rows]


def studies_overview(reader: Reader) -> list[dict[str, Any]]:
    """Every study: metric, mode, stages, trials by status, best value, last activity."""
    studies = reader.query(
        "SELECT s.study_id, s.name, s.metric, s.mode, s.created_at, count(st.stage_id), "
        "max(st.created_at), max(st.finished_at) FROM studies s "
        "LEFT JOIN stages st ON st.study_id = s.study_id GROUP BY s.study_id ORDER BY s.study_id"
    ).rows
    by_status = reader.query(
        "SELECT st.study_id, t.status, count(*), max(t.best_value), min(t.best_value), "
        "max(t.finished_at), max(t.started_at) FROM trials t "
        "JOIN stages st ON st.stage_id = t.stage_id GROUP BY st.study_id, t.status"
    ).rows
    out = []
    for study_id, name, metric, mode, created, n_stages, *times in studies:
        counts: dict[str, int] = {}
        best = None
        for sid, status, n, hi, lo, *more in by_status:
            if sid != study_id:
                continue
            counts[status] = n
            times.extend(more)
            if status == Status.COMPLETED:
                best = hi if _best(mode) == "max" else lo
        stamps = [str(t) for t in (created, *times) if t is not None]
        out.append(
            {
                "name": name,
                "metric": metric,
                "mode": mode,
                "stages": n_stages,
                "counts": counts,
                "best": best,
                "last_activity": max(stamps) if stamps else None,
            }
        )
    return out


def _params_of(reader: Reader, trial_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    if not trial_ids:
        return out
    ids = ", ".join(str(int(i)) for i in trial_ids)
    rows = reader.query(
        f"SELECT trial_id, name, value, text FROM params WHERE trial_id IN ({ids})"
    ).rows
    for trial_id, name, value, text in rows:
        out.setdefault(trial_id, {})[name] = text if text is not None else value
    return out


def live_update(
    reader: Reader,
    study: StudyRecord,
    stage_id: int,
    after: tuple[str, int] | None,
) -> dict[str, Any]:
    """A stage's counters, the trials finished after the cursor (finished_at, trial_id), and
    the metric's epochs so far of the trials running and of those just finished.

    The one writer stamps a batch's trials with one time and commits batches in time order,
    so (finished_at, trial_id) only grows in commit order: a reader never misses a trial.
    """
    head = reader.query(
        "SELECT status, n_trials, epochs, created_at, finished_at FROM stages "
        "WHERE stage_id = :s AND study_id = :study",
        {"s": stage_id, "study": study.study_id},
    ).rows
    if not head:
        raise StorageError(f"{reader.db}: study {study.name!r} has no stage {stage_id}")
    status, n_trials, epochs, created, finished = head[0]
    agg = _best(study.mode)
    counts: dict[str, int] = {}
    best = None
    epochs_done = 0
    for st, n, value, ep in reader.query(
        f"SELECT status, count(*), {agg}(best_value), sum(epochs_run) FROM trials "
        "WHERE stage_id = :s GROUP BY status",
        {"s": stage_id},
    ).rows:
        counts[st] = n
        epochs_done += int(ep or 0)
        if st == Status.COMPLETED:
            best = value
    new = _finished_since(reader, stage_id, after)
    cursor = [str(new[-1][4]), new[-1][0]] if new else (list(after) if after else None)
    feed = _epochs_since(reader, study, stage_id, new)
    return {
        "stage": stage_id,
        "status": status,
        "total": n_trials,
        "epochs": epochs,
        "created_at": str(created),
        "finished_at": None if finished is None else str(finished),
        "counts": counts,
        "done": sum(counts.get(s, 0) for s in FINAL_STATUSES),
        "epochs_done": epochs_done,
        "best": best,
        "new": [[tid, num, st, _finite(v)] for tid, num, st, v, _ in new],
        "cursor": cursor,
        "epochs_new": feed,
    }


def _finished_since(
    reader: Reader, stage_id: int, after: tuple[str, int] | None
) -> list[tuple[Any, ...]]:
    """Trials finished after the cursor, oldest first; the latest 2,000 on a first call."""
    columns = "trial_id, number, status, best_value, finished_at"
    if after is None:
        rows = reader.query(
            f"SELECT {columns} FROM trials WHERE stage_id = :s AND finished_at IS NOT NULL "
            "ORDER BY finished_at DESC, trial_id DESC LIMIT 2000",
            {"s": stage_id},
        ).rows
        return rows[::-1]
    at: str | datetime = after[0]
    if reader.dialect != "sqlite":  # a timestamp column compares with a datetime
        at = datetime.fromisoformat(after[0])
    return reader.query(
        f"SELECT {columns} FROM trials WHERE stage_id = :s AND finished_at IS NOT NULL "
        "AND (finished_at > :at OR (finished_at = :at AND trial_id > :id)) "
        "ORDER BY finished_at, trial_id LIMIT 20000",
        {"s": stage_id, "at": at, "id": after[1]},
    ).rows


def _epochs_since(
    reader: Reader, study: StudyRecord, stage_id: int, finished: list[tuple[Any, ...]]
) -> list[list[Any]]:
    """The study metric's epochs so far, [trial_id, epoch, value], of the EPOCH_FEED_TRIALS
    running trials started last and of the trials that finished since the last answer
    (`finished`), their latest attempt each: a few trials' rows, read through the primary key
    of `metric_values` (the running ones found through the ranking index), however busy the
    writer and large the stage."""
    running = reader.query(
        "SELECT trial_id FROM trials WHERE stage_id = :s AND status = :running "
        "ORDER BY started_at DESC, trial_id DESC LIMIT :n",
        {"s": stage_id, "running": Status.RUNNING.value, "n": EPOCH_FEED_TRIALS},
    ).rows
    ids = [tid for (tid,) in running] + [row[0] for row in finished[-EPOCH_FEED_TRIALS:]]
    if not ids:
        return []
    rows = reader.query(
        "SELECT m.trial_id, m.epoch, m.value FROM metrics m "
        "JOIN trials t ON t.trial_id = m.trial_id AND m.attempt = t.attempts "
        f"WHERE m.trial_id IN ({', '.join(str(int(i)) for i in ids)}) AND m.name = :metric "
        "ORDER BY m.trial_id, m.epoch LIMIT :n",
        {"metric": study.metric, "n": EPOCH_FEED_ROWS},
    ).rows
    return [[tid, epoch, _finite(v)] for tid, epoch, v in rows]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class ParamFilter:
    """Keep trials whose parameter `name` lies in [low, high] (either end may be open)."""

    name: str
    low: float | None
    high: float | None


@dataclass(frozen=True)
class TrialsPage:
    total: int
    columns: list[str]
    rows: list[list[Any]]


def trials_page(
    reader: Reader,
    study: StudyRecord,
    *,
    sort: str = "trial_id",
    descending: bool = False,
    status: str | None = None,
    stage: int | None = None,
    ranges: Sequence[ParamFilter] = (),
    offset: int = 0,
    limit: int = 50,
) -> TrialsPage:
    """One page of the study's trials, filtered and sorted in SQL; params as extra columns."""
    where, params = _trial_filters(study, status, stage, ranges)
    total = reader.query(f"SELECT count(*) FROM trials t {where}", params).rows[0][0]
    join, keys = _order(sort, params)
    direction = "DESC" if descending else "ASC"
    order = ", ".join(f"CASE WHEN {k} IS NULL THEN 1 ELSE 0 END, {k} {direction}" for k in keys)
    rows = reader.query(
        "SELECT t.trial_id, t.stage_id, t.number, t.status, t.best_value, t.best_epoch, "
        f"t.epochs_run FROM trials t {join} {where} "
        f"ORDER BY {order}, t.trial_id LIMIT :limit OFFSET :offset",
        params | {"limit": int(limit), "offset": int(offset)},
    ).rows
    names = list(dict.fromkeys(n for s in study_stages(reader, study) for n in s.ranges))
    values = _params_of(reader, [r[0] for r in rows])
    columns = ["trial_id", "stage_id", "trial", "status", "best_value", "best_epoch", "epochs_run"]
    out = [[*r, *(values.get(r[0], {}).get(n) for n in names)] for r in rows]
    return TrialsPage(total, columns + names, [[_finite(v) for v in r] for r in out])


def _trial_filters(
    study: StudyRecord, status: str | None, stage: int | None, ranges: Sequence[ParamFilter]
) -> tuple[str, dict[str, Any]]:
    clauses = ["t.stage_id IN (SELECT stage_id FROM stages WHERE study_id = :study)"]
    params: dict[str, Any] = {"study": study.study_id}
    if status is not None:
        clauses.append("t.status = :status")
        params["status"] = status
    if stage is not None:
        clauses.append("t.stage_id = :stage")
        params["stage"] = stage
    for i, f in enumerate(ranges):
        bounds = [f"p.name = :pn{i}"]
        params[f"pn{i}"] = f.name
        if f.low is not None:
            bounds.append(f"p.value >= :plo{i}")
            params[f"plo{i}"] = f.low
        if f.high is not None:
            bounds.append(f"p.value <= :phi{i}")
            params[f"phi{i}"] = f.high
        clauses.append(
            "EXISTS (SELECT 1 FROM params p WHERE p.trial_id = t.trial_id AND "
            + " AND ".join(bounds)
            + ")"
        )
    return "WHERE " + " AND ".join(clauses), params


def _order(sort: str, params: dict[str, Any]) -> tuple[str, list[str]]:
    """(JOIN, ORDER BY keys): a trial column, or `param:NAME` for a parameter."""
    if sort.startswith("param:"):
        params["sort_name"] = sort[len("param:") :]
        return (
            "LEFT JOIN params ps ON ps.trial_id = t.trial_id AND ps.name = :sort_name",
            ["ps.value", "ps.text"],
        )
    column = "number" if sort == "trial" else sort
    if column not in TRIAL_SORT_COLUMNS:
        raise StorageError(
            f"sort: must be one of {', '.join(TRIAL_SORT_COLUMNS)} or param:NAME, got {sort!r}"
        )
    return "", [f"t.{column}"]


@dataclass(frozen=True)
class Points:
    """A study's completed trials as numpy columns (trial_id, stage_id, trial, value, one float
    column per parameter; NaN when missing; string choices as indexes into `labels[name]`), in
    finish order, with the cursor (finished_at, trial_id) of the last one read."""

    names: tuple[str, ...]
    columns: dict[str, Any]
    params: dict[str, Any]
    labels: dict[str, dict[str, int]]
    cursor: tuple[Any, int] | None

    def __len__(self) -> int:
        return len(self.columns["value"])


def points(
    reader: Reader, study: StudyRecord, names: Sequence[str], known: Points | None = None
) -> Points:
    """Every completed trial with a value; given `known`, only those finished after its cursor
    are read and appended (a completed trial never changes). SQL pivots the parameters.

    If the total then differs from a count (a second writer committed out of time order), it
    reads everything again."""
    if known is not None and known.names != tuple(names):
        known = None
    grown = _append(known, _completed_rows(reader, study, names, known), names)
    total = reader.query(
        "SELECT count(*) FROM trials t JOIN stages st ON st.stage_id = t.stage_id "
        "WHERE st.study_id = :s AND t.status = 'completed' AND t.best_value IS NOT NULL",
        {"s": study.study_id},
    ).rows[0][0]
    if known is not None and total != len(grown):
        return points(reader, study, names, None)
    return grown


def _completed_rows(
    reader: Reader, study: StudyRecord, names: Sequence[str], known: Points | None
) -> list[tuple[Any, ...]]:
    picks = "".join(  # value and text apart: one type per column on every database
        f", max(CASE WHEN p.name = :n{i} THEN p.value END)"
        f", max(CASE WHEN p.name = :n{i} THEN p.text END)"
        for i in range(len(names))
    )
    params: dict[str, Any] = {"s": study.study_id, **{f"n{i}": n for i, n in enumerate(names)}}
    after = ""
    if known is not None and known.cursor is not None:
        after = " AND (t.finished_at > :at OR (t.finished_at = :at AND t.trial_id > :id))"
        params |= {"at": known.cursor[0], "id": known.cursor[1]}
    return reader.query(
        f"SELECT t.trial_id, t.stage_id, t.number, t.best_value, t.finished_at{picks} "
        "FROM trials t JOIN stages st ON st.stage_id = t.stage_id "
        "LEFT JOIN params p ON p.trial_id = t.trial_id WHERE st.study_id = :s "
        f"AND t.status = 'completed' AND t.best_value IS NOT NULL{after} "
        "GROUP BY t.trial_id, t.stage_id, t.number, t.best_value, t.finished_at "
        "ORDER BY t.finished_at, t.trial_id",
        params,
    ).rows


def _append(known: Points | None, rows: list[tuple[Any, ...]], names: Sequence[str]) -> Points:
    import numpy as np

    columns = list(zip(*rows, strict=True)) if rows else [()] * (5 + 2 * len(names))
    labels = {n: dict(v) for n, v in known.labels.items()} if known else {}
    new = {
        "trial_id": np.array(columns[0], dtype=np.int64),
        "stage_id": np.array(columns[1], dtype=np.int64),
        "trial": np.array(columns[2], dtype=np.int64),
        "value": np.array(columns[3], dtype=np.float64),
    }
    params = {}
    for i, name in enumerate(names):
        values, texts = columns[5 + 2 * i], columns[6 + 2 * i]
        if name not in labels and any(t is not None for t in texts):
            labels[name] = {}
        if name not in labels:
            params[name] = np.array(values, dtype=np.float64)
            continue
        index = labels[name]  # a choice of strings: indexes, new labels appended
        params[name] = np.array(
            [np.nan if t is None else index.setdefault(t, len(index)) for t in texts],
            dtype=np.float64,
        )
    if known is not None:
        new = {k: np.concatenate([known.columns[k], v]) for k, v in new.items()}
        params = {k: np.concatenate([known.params[k], v]) for k, v in params.items()}
    cursor = (rows[-1][4], rows[-1][0]) if rows else (known.cursor if known else None)
    return Points(tuple(names), new, params, labels, cursor)


def top_trial_ids(reader: Reader, study: StudyRecord, k: int) -> list[int]:
    order = Mode(study.mode).sql_order
    rows = reader.query(
        "SELECT t.trial_id FROM trials t JOIN stages st ON st.stage_id = t.stage_id "
        "WHERE st.study_id = :s AND t.status = 'completed' AND t.best_value IS NOT NULL "
        f"ORDER BY t.best_value {order}, t.trial_id LIMIT :k",
        {"s": study.study_id, "k": int(k)},
    ).rows
    return [r[0] for r in rows]


def curves(reader: Reader, study: StudyRecord, trial_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Per trial (latest attempt): stage, number, status, params and {metric: [values]}."""
    if not trial_ids:
        return []
    ids = ", ".join(str(int(i)) for i in trial_ids)
    heads = reader.query(
        "SELECT t.trial_id, t.stage_id, st.kind, t.number, t.status, t.best_value, t.attempts "
        "FROM trials t JOIN stages st ON st.stage_id = t.stage_id "
        f"WHERE st.study_id = :s AND t.trial_id IN ({ids})",
        {"s": study.study_id},
    ).rows
    rows = reader.query(
        "SELECT m.trial_id, m.epoch, m.name, m.value FROM metrics m "
        "JOIN trials t ON t.trial_id = m.trial_id AND m.attempt = t.attempts "
        f"WHERE m.trial_id IN ({ids}) ORDER BY m.trial_id, m.epoch"
    ).rows
    series: dict[int, dict[str, list[Any]]] = {}
    for trial_id, epoch, name, value in rows:
        values = series.setdefault(trial_id, {}).setdefault(name, [])
        values.extend([None] * (epoch - len(values)))
        values[epoch - 1] = _finite(value)
    params = _params_of(reader, [h[0] for h in heads])
    by_id = {h[0]: h for h in heads}
    out = []
    for trial_id in trial_ids:
        if trial_id not in by_id:
            continue
        _, stage_id, kind, number, status, best, _ = by_id[trial_id]
        out.append(
            {
                "trial_id": trial_id,
                "stage_id": stage_id,
                "kind": kind,
                "trial": number,
                "status": status,
                "best_value": _finite(best),
                "params": params.get(trial_id, {}),
                "metrics": series.get(trial_id, {}),
            }
        )
    return out


def run_sql_limited(db: str, sql: str, seconds: float) -> QueryResult:
    """`run_sql` (the same read-only guard and refusals) that stops after `seconds`."""
    check_query(sql)
    with read_only(db) as reader:
        try:
            found = reader.stream(sql, timeout=seconds)
            return QueryResult(found.columns, list(found.rows))
        except QueryTimeout:
            raise StorageError(
                f"sql: stopped after {seconds:g} s (the dashboard's time limit per query; "
                "run it with `hpsearch sql` for no limit)"
            ) from None
