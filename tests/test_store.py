"""The Store on SQLite and PostgreSQL: schema, versions, batching, types, resume-safe writes."""

from __future__ import annotations

import json
import math
import multiprocessing
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import event, inspect

from hpsearch.space import Space
from storage import SCHEMA_VERSION, Batch, SchemaVersionError, StorageError, Store, revision_id
from tests.conftest import db_execute, db_rows, drop_pg_database, new_pg_database


def new_stage(store: Store, n: int = 3) -> tuple[int, int]:
    study = store.ensure_study("s", "noop", "val_acc", "max")
    stage = store.begin_stage(
        study.study_id,
        "coarse",
        seed=0,
        epochs=2,
        ranges={"lr": {"type": "loguniform", "low": 1e-3, "high": 1.0}},
        fixed={"hidden": 10},
        configs=[{"lr": 0.01 * (i + 1), "opt": "sgd"} for i in range(n)],
        seeds=list(range(n)),
    )
    return study.study_id, stage.stage_id


def test_new_database_has_tables_view_and_version(db_url: str) -> None:
    store = Store(db_url)
    names = set(inspect(store.engine).get_table_names())
    views = set(inspect(store.engine).get_view_names())
    store.close()
    tables = {"studies", "stages", "trials", "params", "flags", "attempts"}
    assert tables | {"metric_names", "metric_values"} <= names
    assert views == {"trial_results", "metrics"}  # metrics: the values with their names
    version = db_rows(db_url, "SELECT value FROM hpsearch_meta WHERE key='schema_version'")
    assert version == [(str(SCHEMA_VERSION),)]  # a new database is at the newest revision
    assert db_rows(db_url, "SELECT version_num FROM alembic_version") == [
        (revision_id(SCHEMA_VERSION),)
    ]


def test_new_sqlite_file_uses_wal(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    Store(str(db)).close()
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_trials_params_and_records(db_url: str) -> None:
    store = Store(db_url)
    _, stage_id = new_stage(store)
    trials = store.trials(stage_id)
    assert [t.number for t in trials] == [0, 1, 2]
    assert trials[1].params == {"lr": pytest.approx(0.02), "opt": "sgd"}
    assert {t.status for t in trials} == {"pending"}
    assert store.stage(stage_id).fixed == {"hidden": 10}  # type: ignore[union-attr]


RANGES = {
    "lr": {"type": "loguniform", "low": 1e-6, "high": 1e6},
    "batch": {"type": "lograndint", "low": 1, "high": 2**30},
    "layers": {"type": "randint", "low": -5, "high": 5},
    "bn": {"type": "choice", "values": [True, False]},
    "act": {"type": "choice", "values": ["relu", "tanh", "é ü 😀"]},
    "width": {"type": "choice", "values": [16, 32]},
}
CONFIGS = [
    {"lr": 0.1, "batch": 2**30 - 1, "layers": -5, "bn": True, "act": "é ü 😀", "width": 32},
    {"lr": 1e-6 * math.pi, "batch": 1, "layers": 0, "bn": False, "act": "relu", "width": 16},
]


def test_param_types_survive_the_round_trip(db_url: str) -> None:
    store = Store(db_url)
    study = store.ensure_study("types", "noop", "val_acc", "max")
    stage = store.begin_stage(
        study.study_id, "coarse", seed=0, epochs=1, ranges=RANGES, fixed={"data": "x", "k": 3},
        configs=CONFIGS, seeds=[1, 2],
    )  # fmt: skip
    space = Space.from_dict(RANGES)
    read = [space.typed(t.params) for t in store.trials(stage.stage_id)]
    assert read == CONFIGS
    for got, want in zip(read, CONFIGS, strict=True):
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}
    assert store.stage(stage.stage_id).ranges == RANGES  # type: ignore[union-attr]
    store.close()


def test_trial_results_params_are_json_numbers_and_strings(db_url: str) -> None:
    store = Store(db_url)
    study = store.ensure_study("types", "noop", "val_acc", "max")
    store.begin_stage(
        study.study_id, "coarse", seed=0, epochs=1, ranges=RANGES, fixed={},
        configs=CONFIGS, seeds=[1, 2],
    )  # fmt: skip
    store.close()
    rows = db_rows(db_url, "SELECT params FROM trial_results ORDER BY trial")
    params = [p if isinstance(p, dict) else json.loads(p) for (p,) in rows]
    assert params[0] == {
        "lr": 0.1, "batch": 2**30 - 1, "layers": -5, "bn": 1, "act": "é ü 😀", "width": 32
    }  # fmt: skip
    # SQLite's JSON writes 15 significant digits (the params table keeps all 17)
    assert params[1]["lr"] == pytest.approx(1e-6 * math.pi, rel=1e-14)
    assert params[1]["act"] == "relu"
    for p in params:
        numbers = [v for k, v in p.items() if k != "act"]
        assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers), p


def test_one_transaction_per_batch(db_url: str) -> None:
    store = Store(db_url)
    _, stage_id = new_stage(store)
    batch = Batch()
    at = datetime(2026, 1, 1)
    for t in store.trials(stage_id):
        batch.start(t.trial_id, 1, "node", at)
        for epoch in (1, 2):
            for name in ("val_acc", "val_loss", "train_loss"):
                row = {"trial_id": t.trial_id, "attempt": 1, "epoch": epoch, "name": name}
                batch.metrics.append({**row, "value": 0.1 * epoch})
        batch.finish(
            t.trial_id, "completed", attempt=1, error=None, best=(0.2, 2), epochs_run=2, at=at
        )
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    store.record(batch)
    assert len(commits) == 1
    assert db_rows(db_url, "SELECT count(*) FROM metrics") == [(3 * 2 * 3,)]
    assert store.status_counts(stage_id) == {"completed": 3}
    finished = db_rows(db_url, "SELECT best_value, best_epoch, epochs_run FROM trials")
    assert set(finished) == {(0.2, 2, 2)}


def test_duplicate_metric_rows_are_refused(db_url: str) -> None:
    store = Store(db_url)
    _, stage_id = new_stage(store, 1)
    trial_id = store.trials(stage_id)[0].trial_id
    row = {"trial_id": trial_id, "attempt": 1, "epoch": 1, "name": "val_acc", "value": 0.5}
    store.record(Batch(metrics=[dict(row)]))
    with pytest.raises(StorageError, match="(?i)unique") as info:
        store.record(Batch(metrics=[dict(row)]))
    assert "\n" not in str(info.value)
    store.record(Batch(metrics=[{**row, "attempt": 2}]))  # a new attempt is a new row
    assert db_rows(db_url, "SELECT attempt, value FROM metrics ORDER BY attempt") == [
        (1, 0.5),
        (2, 0.5),
    ]


def test_nan_is_stored_as_null_and_inf_kept(db_url: str) -> None:
    store = Store(db_url)
    _, stage_id = new_stage(store, 1)
    tid = store.trials(stage_id)[0].trial_id
    base = {"trial_id": tid, "attempt": 1, "epoch": 1}
    values = {"a": float("nan"), "b": float("inf"), "c": float("-inf"), "d": -0.0, "e": 1e-308}
    store.record(Batch(metrics=[{**base, "name": k, "value": v} for k, v in values.items()]))
    rows = dict(db_rows(db_url, "SELECT name, value FROM metrics"))  # type: ignore[arg-type]
    assert rows == {"a": None, "b": math.inf, "c": -math.inf, "d": 0.0, "e": 1e-308}


def test_newer_and_older_schema_versions_are_refused(db_url: str) -> None:
    Store(db_url).close()
    db_execute(db_url, "UPDATE hpsearch_meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(SchemaVersionError, match="schema version 99 is newer.*pip install -U"):
        Store(db_url)
    db_execute(db_url, "UPDATE hpsearch_meta SET value='0' WHERE key='schema_version'")
    with pytest.raises(SchemaVersionError, match="schema version 0 is older"):
        Store(db_url)


def test_unusable_databases_give_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        Store(str(tmp_path / "missing" / "h.db"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StorageError, match="not a database"):
        Store(str(junk))


def test_a_database_of_another_program_is_refused(db_url: str) -> None:
    db_execute(db_url, "CREATE TABLE t (x integer)")
    with pytest.raises(StorageError, match="not an hpsearch database"):
        Store(db_url)
    assert db_rows(db_url, "SELECT count(*) FROM t") == [(0,)]


def test_study_with_other_metric_is_refused(db_url: str) -> None:
    store = Store(db_url)
    store.ensure_study("s", "noop", "val_acc", "max")
    assert store.ensure_study("s", "noop", "val_acc", "max").name == "s"
    with pytest.raises(StorageError, match="study 's' was run with metric=val_acc"):
        store.ensure_study("s", "noop", "val_loss", "min")


def _open_at(db: str, start: float) -> str:
    while time.time() < start:
        pass
    try:
        Store(db).close()
        return "ok"
    except StorageError as exc:
        return str(exc)


def test_two_processes_creating_one_new_database_at_once(pg_url: str) -> None:
    """Two drivers started together on an empty database: both open it, one schema.

    PostgreSQL only: on SQLite a rare "database is locked" remains at this exact moment.
    """
    dbs = [pg_url] + [new_pg_database() for _ in range(3)]
    try:
        # spawn, not fork: the suite's process has Ray's threads running, and a forked copy of
        # a process with threads can hang
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            for db in dbs:
                start = time.time() + 3.0  # both workers are up and waiting by then
                assert pool.starmap(_open_at, [(db, start), (db, start)]) == ["ok", "ok"], db
                assert db_rows(db, "SELECT count(*) FROM hpsearch_meta") == [(1,)]
    finally:
        for db in dbs[1:]:
            drop_pg_database(db)
