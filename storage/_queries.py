"""Read queries -> pandas: plain SQL through a read-only connection, pivots done in pandas.

Fast on large studies (no ORM objects): a million metric rows load in about a second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from storage._checkpoint_reads import checkpoint_totals
from storage._errors import NotFoundError
from storage._readonly import Reader, read_only
from storage._records import (
    METRIC_COLUMNS,
    TRIAL_COLUMNS,
    CheckpointTotals,
    EnsembleRecord,
    FlagRecord,
    MemberRecord,
    StageRecord,
    StageSummary,
    StudyRecord,
    StudySummary,
    TrialRecord,
)
from storage._terms import Mode, Status

if TYPE_CHECKING:  # pandas is imported where used: it costs ~0.3 s at CLI start
    import pandas as pd

_TRIALS_SQL = """
SELECT t.trial_id, t.stage_id, st.kind AS stage_kind, t.number AS trial, t.status,
       t.best_value, t.best_epoch, t.epochs_run, t.attempts, t.seed, t.node_id, t.error,
       t.started_at, t.finished_at
FROM trials t JOIN stages st ON st.stage_id = t.stage_id
WHERE st.study_id = :study_id{where}
ORDER BY {order}
"""
_PARAMS_SQL = """
SELECT p.trial_id, p.name, p.value, p.text
FROM params p JOIN trials t ON t.trial_id = p.trial_id JOIN stages st ON st.stage_id = t.stage_id
WHERE st.study_id = :study_id{where}
"""
_PARAMS_OF_SQL = "SELECT trial_id, name, value, text FROM params WHERE trial_id IN ({ids})"
_TRIAL_BOUNDS_SQL = """
SELECT min(t.trial_id), max(t.trial_id)
FROM trials t JOIN stages st ON st.stage_id = t.stage_id
WHERE st.study_id = :study_id{where}
"""
# Each trial's rows are found through the primary key (trial_id, attempt, ...): by the
# selected trial ids, or by the id range of the study's trials (joined, so other studies'
# trials inside that range are dropped in SQL, never loaded).
_METRICS_SQL = """
SELECT m.trial_id, t.stage_id, t.number AS trial, m.attempt, m.epoch, m.name, m.value
FROM metrics m
JOIN trials t ON t.trial_id = m.trial_id{latest}
JOIN stages st ON st.stage_id = t.stage_id
WHERE st.study_id = :study_id AND {trials}{where}
ORDER BY m.trial_id, m.attempt, m.epoch, m.name
"""
CHUNK_ROWS = 100_000


def _study(reader: Reader, name: str) -> StudyRecord:
    found = reader.query(
        "SELECT study_id, name, trainable, metric, mode FROM studies WHERE name = :name",
        {"name": name},
    ).rows
    if not found:
        names = reader.query("SELECT name FROM studies ORDER BY study_id").rows
        known = ", ".join(n for (n,) in names) or "none"
        raise NotFoundError(f"{reader.db}: no study named {name!r} (studies here: {known})")
    return StudyRecord(*found[0])


def find_study(db: str, name: str) -> StudyRecord:
    """The study of this name in an existing database (read-only; clear error if absent)."""
    with read_only(db) as reader:
        return _study(reader, name)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def load_stages(db: str, study: str) -> list[StageRecord]:
    """The study's stages in order, with the ranges each sampled from."""
    with read_only(db) as reader:
        return _stages(reader, _study(reader, study).study_id)


def _stages(reader: Reader, study_id: int) -> list[StageRecord]:
    rows = reader.query(
        f"SELECT {stage_columns(reader)} FROM stages WHERE study_id = :s ORDER BY stage_id",
        {"s": study_id},
    ).rows
    return [_stage(r) for r in rows]


def stage_columns(reader: Reader) -> str:
    """The columns `_stage` reads (an epoch budget only from schema version 8 on)."""
    budget = "epoch_budget" if reader.schema_version >= 8 else "NULL"
    return (
        "stage_id, study_id, kind, parent_stage_id, status, seed, epochs, n_trials, "
        f"ranges, fixed, proposal, {budget}"
    )


def _stage(row: tuple[Any, ...]) -> StageRecord:
    stage_id, study_id, kind, parent, status, seed, epochs, n_trials = row[:8]
    ranges, fixed, proposal = (_json(v) for v in row[8:11])
    return StageRecord(
        stage_id,
        study_id,
        kind,
        parent,
        status,
        seed,
        epochs,
        n_trials,
        ranges or {},
        fixed or {},
        proposal,
        row[11],
    )


def load_summary(db: str, study: str) -> StudySummary:
    """The study and, per stage in order, its trials by status, best trial and flags.

    Counted and ranked by the database: a few rows per stage, however many trials it has.
    """
    with read_only(db) as reader:
        record = _study(reader, study)
        counts = _status_counts(reader, record.study_id)
        flags = _flags(reader, record.study_id)
        sizes = checkpoint_totals(reader, record.study_id)
        stages = tuple(
            StageSummary(
                stage,
                counts.get(stage.stage_id, {}),
                _best_trial(reader, stage.stage_id, Mode(record.mode)),
                flags.get(stage.stage_id, ()),
                sizes.get(stage.stage_id, CheckpointTotals()),
            )
            for stage in _stages(reader, record.study_id)
        )
        ensembles = _ensembles(reader, record.study_id)
    return StudySummary(record, stages, ensembles)


def _ensembles(reader: Reader, study_id: int) -> tuple[EnsembleRecord, ...]:
    """The study's ensembles with their members; none in a database older than the table."""
    if not reader.has_table("ensembles"):
        return ()
    rows = reader.query(
        "SELECT ensemble_id, stage_id, kind, size, split, accuracy, best_member_accuracy "
        "FROM ensembles WHERE study_id = :s ORDER BY ensemble_id",
        {"s": study_id},
    ).rows
    members: dict[int, tuple[MemberRecord, ...]] = {}
    for ensemble_id, *fields in reader.query(
        "SELECT m.ensemble_id, m.trial_id, t.number, m.epoch, m.accuracy FROM ensemble_members m "
        "JOIN ensembles e ON e.ensemble_id = m.ensemble_id "
        "JOIN trials t ON t.trial_id = m.trial_id "
        "WHERE e.study_id = :s ORDER BY m.ensemble_id, t.number, m.epoch",
        {"s": study_id},
    ).rows:
        members[ensemble_id] = (*members.get(ensemble_id, ()), MemberRecord(*fields))
    return tuple(
        EnsembleRecord(e, stage, kind, size, split, acc, best, members.get(e, ()))
        for e, stage, kind, size, split, acc, best in rows
    )


def _status_counts(reader: Reader, study_id: int) -> dict[int, dict[str, int]]:
    """{stage_id: {status: trials}} for every stage of the study that has trials."""
    rows = reader.query(_COUNTS_SQL, {"s": study_id}).rows
    counts: dict[int, dict[str, int]] = {}
    for stage_id, status, n in rows:
        counts.setdefault(stage_id, {})[status] = int(n)
    return counts


def _flags(reader: Reader, study_id: int) -> dict[int, tuple[FlagRecord, ...]]:
    """{stage_id: its flags in the order they were raised}."""
    rows = reader.query(
        "SELECT f.stage_id, f.param, f.side, f.value, f.position, f.message FROM flags f "
        "JOIN stages st ON st.stage_id = f.stage_id WHERE st.study_id = :s ORDER BY f.flag_id",
        {"s": study_id},
    ).rows
    flags: dict[int, tuple[FlagRecord, ...]] = {}
    for stage_id, *fields in rows:
        flags[stage_id] = (*flags.get(stage_id, ()), FlagRecord(*fields))
    return flags


# Columns named as TrialRecord's fields (params come from their own table).
# Both read the index (stage_id, status, best_value): only the study's stages, only the best row.
_COUNTS_SQL = """
SELECT stage_id, status, count(*) FROM trials
WHERE stage_id IN (SELECT stage_id FROM stages WHERE study_id = :s)
GROUP BY stage_id, status ORDER BY stage_id, status
"""
_BEST_SQL = """
SELECT trial_id, stage_id, number, status, seed, attempts, best_value, best_epoch, epochs_run,
       error, node_id
FROM trials
WHERE stage_id = :stage AND status = :completed AND best_value IS NOT NULL
ORDER BY best_value {order}, number
LIMIT 1
"""


def _best_trial(reader: Reader, stage_id: int, mode: Mode) -> TrialRecord | None:
    """The stage's best completed trial with its params (ties: the lowest trial number)."""
    found = reader.query(
        _BEST_SQL.format(order=mode.sql_order),
        {"stage": stage_id, "completed": Status.COMPLETED.value},
    )
    if not found.rows:
        return None
    fields = dict(zip(found.columns, found.rows[0], strict=True))
    params = reader.query(
        "SELECT name, value, text FROM params WHERE trial_id = :t ORDER BY name",
        {"t": fields["trial_id"]},
    ).rows
    values = {name: text if text is not None else value for name, value, text in params}
    return TrialRecord(**fields, params=values)


def _filters(
    stage: int | None, status: str | None, trial_ids: Sequence[int] | None
) -> tuple[str, dict[str, Any]]:
    where, params = "", dict[str, Any]()
    if stage is not None:
        where, params["stage"] = where + " AND t.stage_id = :stage", stage
    if status is not None:
        where, params["status"] = where + " AND t.status = :status", status
    if trial_ids is not None:
        where += f" AND t.trial_id IN ({_id_list(trial_ids)})"
    return where, params


def _id_list(trial_ids: Sequence[int]) -> str:
    return ", ".join(str(int(i)) for i in trial_ids) or "NULL"


def _frame(reader: Reader, sql: str, params: dict[str, Any], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    result = reader.query(sql, params)
    return pd.DataFrame.from_records(result.rows, columns=columns)


def _wide_params(params: pd.DataFrame, ranges_order: list[str]) -> pd.DataFrame:
    """One column per parameter (in the spec's order); strings stay strings."""
    import pandas as pd

    if params.empty:
        return pd.DataFrame(index=pd.Index([], name="trial_id"))
    names = list(pd.unique(params["name"]))
    order = [n for n in ranges_order if n in names] + sorted(set(names) - set(ranges_order))
    values = params.pivot(index="trial_id", columns="name", values="value")
    texts = params.pivot(index="trial_id", columns="name", values="text")
    for name in order:
        if texts[name].notna().any():
            values[name] = texts[name].where(texts[name].notna(), values[name])
    return values[order]


def _ranges_order(rows: list[tuple[Any, ...]]) -> list[str]:
    """Parameter names in the order the stages' ranges list them (the row order of the
    database's answer differs between SQLite and PostgreSQL)."""
    return list(dict.fromkeys(name for (ranges,) in rows for name in _json(ranges) or {}))


def _int_params(rows: list[tuple[Any, ...]]) -> set[str]:
    """Parameters sampled as integers (randint, lograndint) in every stage that has them."""
    kinds: dict[str, set[str]] = {}
    for (ranges,) in rows:
        for name, spec in (_json(ranges) or {}).items():
            kinds.setdefault(name, set()).add(str(spec.get("type", "")))
    return {n for n, k in kinds.items() if all(t.endswith("randint") for t in k)}


def load_trials(
    db: str,
    study: str,
    *,
    stage: int | None = None,
    status: str | None = None,
    top: int | None = None,
    every: int = 1,
) -> pd.DataFrame:
    """One row per trial: its stage, status, best value and epoch, and one column per parameter.

    With `top`, only the best `top` completed trials, best first (ranked in SQL: only they are
    read); with `every`, only each stage's trials numbered 0, every, 2 * every, ... (a uniform
    sample of a large study). Parameter columns whose names clash with a trial column get a
    `param_` prefix.
    """
    import pandas as pd

    with read_only(db) as reader:
        record = _study(reader, study)
        trials, values = _trial_rows(reader, record, stage, status, top, every)
        ranges = reader.query(
            "SELECT ranges FROM stages WHERE study_id = :study_id ORDER BY stage_id",
            {"study_id": record.study_id},
        ).rows
    for column in ("started_at", "finished_at"):
        trials[column] = pd.to_datetime(trials[column], errors="coerce")
    trials["best_value"] = trials["best_value"].astype(float)
    trials["best_epoch"] = trials["best_epoch"].astype("Int64")
    wide = _wide_params(values, _ranges_order(ranges))
    for name in _int_params(ranges):
        if name in wide and pd.api.types.is_numeric_dtype(wide[name]):
            wide[name] = wide[name].round().astype("Int64")
    wide.columns = [f"param_{c}" if c in TRIAL_COLUMNS else c for c in wide.columns]
    return trials.join(wide, on="trial_id")


def _trial_rows(
    reader: Reader,
    study: StudyRecord,
    stage: int | None,
    status: str | None,
    top: int | None,
    every: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials' rows and their params' rows (of the best `top` only, when given)."""
    where, params = _filters(stage, status, None)
    params["study_id"] = study.study_id
    if every > 1:
        where += f" AND t.number % {int(every)} = 0"
    order = "t.stage_id, t.number"
    if top is not None:
        where += f" AND t.status = '{Status.COMPLETED}' AND t.best_value IS NOT NULL"
        order = f"t.best_value {Mode(study.mode).sql_order}, {order} LIMIT {int(top)}"
    trials = _frame(reader, _TRIALS_SQL.format(where=where, order=order), params, TRIAL_COLUMNS)
    param_columns = ["trial_id", "name", "value", "text"]
    if top is None:
        values = _frame(reader, _PARAMS_SQL.format(where=where), params, param_columns)
    else:
        ids = _id_list(list(trials["trial_id"]))
        values = _frame(reader, _PARAMS_OF_SQL.format(ids=ids), {}, param_columns)
    return trials, values


def load_metrics(
    db: str,
    study: str,
    *,
    stage: int | None = None,
    names: Sequence[str] | None = None,
    trial_ids: Sequence[int] | None = None,
    all_attempts: bool = False,
) -> pd.DataFrame:
    """The long per-epoch table: trial_id, stage_id, trial, attempt, epoch, name, value.

    Only each trial's latest attempt unless `all_attempts`; `names` keeps only those metrics;
    `trial_ids` reads exactly those trials' rows.
    """
    import pandas as pd

    chunks = iter_metrics(
        db, study, stage=stage, names=names, trial_ids=trial_ids, all_attempts=all_attempts
    )
    frame = pd.concat(chunks, ignore_index=True)
    frame["name"] = frame["name"].astype("category")
    return frame


def iter_metrics(
    db: str,
    study: str,
    *,
    stage: int | None = None,
    names: Sequence[str] | None = None,
    trial_ids: Sequence[int] | None = None,
    all_attempts: bool = False,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """`load_metrics` in frames of at most `chunk_rows` rows, read as they are consumed."""
    where, params = _filters(stage, None, None)
    if names is not None:
        keys = {f"n{i}": n for i, n in enumerate(names)}
        where += f" AND m.name IN ({', '.join(':' + k for k in keys) or 'NULL'})"
        params.update(keys)
    latest = "" if all_attempts else " AND m.attempt = t.attempts"
    with read_only(db) as reader:
        params["study_id"] = _study(reader, study).study_id
        if trial_ids is not None:
            selected = f"m.trial_id IN ({_id_list(trial_ids)})"
        else:
            lo, hi = _trial_bounds(reader, params) or (0, -1)
            selected = "m.trial_id BETWEEN :lo AND :hi"
            params.update(lo=lo, hi=hi)
        sql = _METRICS_SQL.format(latest=latest, trials=selected, where=where)
        empty = True
        for rows in reader.chunks(sql, params, chunk_rows):
            empty = False
            yield _metrics_frame(rows)
    if empty:
        yield _metrics_frame([])


def _trial_bounds(reader: Reader, params: dict[str, Any]) -> tuple[int, int] | None:
    """The smallest and largest id of the study's (or the stage's) trials; None if none."""
    where = " AND t.stage_id = :stage" if "stage" in params else ""
    keys: dict[str, Any] = {k: params[k] for k in ("study_id", "stage") if k in params}
    ((lo, hi),) = reader.query(_TRIAL_BOUNDS_SQL.format(where=where), keys).rows
    return None if lo is None else (int(lo), int(hi))


def _metrics_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=METRIC_COLUMNS)
    frame["value"] = frame["value"].astype(float)
    return frame


def metrics_wide(metrics: pd.DataFrame) -> pd.DataFrame:
    """Long metrics -> one row per (trial_id, attempt, epoch), one column per metric name."""
    index = ["trial_id", "stage_id", "trial", "attempt", "epoch"]
    wide = metrics.assign(name=metrics["name"].astype(str)).pivot(
        index=index, columns="name", values="value"
    )
    wide.columns.name = None
    return wide.reset_index()
