"""The Store: schema, WAL, version check, batching, resume-safe writes."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import event

from storage import Batch, SchemaVersionError, StorageError, Store


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


def test_new_database_has_tables_view_wal_and_version(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    Store(str(db)).close()
    conn = sqlite3.connect(db)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {
        "studies", "stages", "trials", "params", "metrics", "flags", "attempts", "trial_results"
    } <= names  # fmt: skip
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    version = conn.execute("SELECT value FROM hpsearch_meta WHERE key='schema_version'").fetchone()
    assert version == ("2",)  # schema version 2 added `attempts`
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0002",)]


def test_trials_params_and_records(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "h.db"))
    _, stage_id = new_stage(store)
    trials = store.trials(stage_id)
    assert [t.number for t in trials] == [0, 1, 2]
    assert trials[1].params == {"lr": pytest.approx(0.02), "opt": "sgd"}
    assert {t.status for t in trials} == {"pending"}
    assert store.stage(stage_id).fixed == {"hidden": 10}  # type: ignore[union-attr]


def test_one_transaction_per_batch(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "h.db"))
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
    counts = sqlite3.connect(tmp_path / "h.db").execute("SELECT count(*) FROM metrics").fetchone()
    assert counts == (3 * 2 * 3,)
    assert store.status_counts(stage_id) == {"completed": 3}


def test_duplicate_metric_rows_are_refused(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "h.db"))
    _, stage_id = new_stage(store, 1)
    trial_id = store.trials(stage_id)[0].trial_id
    row = {"trial_id": trial_id, "attempt": 1, "epoch": 1, "name": "val_acc", "value": 0.5}
    store.record(Batch(metrics=[dict(row)]))
    with pytest.raises(StorageError, match="UNIQUE"):
        store.record(Batch(metrics=[dict(row)]))
    store.record(Batch(metrics=[{**row, "attempt": 2}]))  # a new attempt is a new row


def test_nan_is_stored_as_null_and_inf_kept(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "h.db"))
    _, stage_id = new_stage(store, 1)
    tid = store.trials(stage_id)[0].trial_id
    base = {"trial_id": tid, "attempt": 1, "epoch": 1}
    store.record(
        Batch(
            metrics=[
                {**base, "name": "a", "value": float("nan")},
                {**base, "name": "b", "value": float("inf")},
            ]
        )
    )
    rows = dict(sqlite3.connect(tmp_path / "h.db").execute("SELECT name, value FROM metrics"))
    assert rows["a"] is None and rows["b"] == float("inf")


def test_newer_and_older_schema_versions_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    Store(str(db)).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE hpsearch_meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    with pytest.raises(SchemaVersionError, match="schema version 99 is newer.*pip install -U"):
        Store(str(db))
    conn.execute("UPDATE hpsearch_meta SET value='0' WHERE key='schema_version'")
    conn.commit()
    with pytest.raises(SchemaVersionError, match="schema version 0 is older"):
        Store(str(db))


def test_unusable_databases_give_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        Store(str(tmp_path / "missing" / "h.db"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StorageError, match="not a database"):
        Store(str(junk))
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(StorageError, match="not an hpsearch database"):
        Store(str(other))


def test_study_with_other_metric_is_refused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    store.ensure_study("s", "noop", "val_acc", "max")
    assert store.ensure_study("s", "noop", "val_acc", "max").name == "s"
    with pytest.raises(StorageError, match="study 's' was run with metric=val_acc"):
        store.ensure_study("s", "noop", "val_loss", "min")
