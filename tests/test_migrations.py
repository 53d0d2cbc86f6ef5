"""Schema migrations: revision 0001 is hpsearch 0.1's schema, a real v1 database upgrades through
the CLI with every row kept, writing commands refuse an old database, reading commands read it."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import DateTime, create_engine
from sqlalchemy.engine import make_url

import storage
from storage import SCHEMA_VERSION, SchemaVersionError, Store, revision_id
from storage._migrate import migrate, migration_engine, script_directory
from storage._models import Base
from tests.conftest import ROOT, db_rows, query, run_cli

ASSET = ROOT / "tests" / "assets" / "v1"
V1_DB = "hpsearch-v1.db"
HEAD = SCHEMA_VERSION  # every upgrade ends at the newest revision
V1_TABLES = ("hpsearch_meta", "studies", "stages", "trials", "params", "metrics", "flags")
FINAL = ("completed", "failed", "diverged")


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    """A copy of the database hpsearch 0.1 wrote, next to the spec and trainable that made it."""
    for name in (V1_DB, "study.toml", "flaky.py"):
        shutil.copy(ASSET / name, tmp_path / name)
    return tmp_path / V1_DB


def schema(db: Path) -> list[tuple[str, str, str, str | None]]:
    """Every table, index and view as SQLite stores it, in creation order."""
    return query(db, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid")


def rows(db: Path, table: str) -> list[tuple]:
    return sorted(query(db, f"SELECT * FROM {table}"), key=repr)


def without_epoch_budget(stages: list[tuple]) -> list[tuple]:
    """Upgraded stage rows without the column revision 0008 adds, checked NULL (no budget)."""
    assert [r[-1] for r in stages] == [None] * len(stages)
    return sorted((r[:-1] for r in stages), key=repr)


def snapshot(db: Path) -> dict[str, list[tuple]]:
    return {table: rows(db, table) for table in (*V1_TABLES, "trial_results")}


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_revision_0001_creates_exactly_the_schema_of_hpsearch_0_1(tmp_path: Path) -> None:
    db = tmp_path / "r1.db"
    engine = migration_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        migrate(conn, None, str(db), to=1)
    engine.dispose()
    ours = [entry for entry in schema(db) if entry[2] != "alembic_version"]
    assert ours == schema(ASSET / V1_DB)  # same tables, indexes, view text, same order
    assert rows(db, "hpsearch_meta") == [("schema_version", "1")]
    assert query(db, "SELECT version_num FROM alembic_version") == [("0001",)]


def test_a_new_database_is_at_the_newest_revision_and_matches_the_models(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    Store(str(db)).close()
    head = revision_id(SCHEMA_VERSION)
    assert script_directory().get_current_head() == head
    assert query(db, "SELECT version_num FROM alembic_version") == [(head,)]
    assert rows(db, "hpsearch_meta") == [("schema_version", str(SCHEMA_VERSION))]
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert differences == []  # the live models are what the migrations built


def test_revision_files_are_numbered_in_order() -> None:
    script = script_directory()
    chain = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert chain == [revision_id(n) for n in range(1, SCHEMA_VERSION + 1)]


def test_v1_database_upgrades_through_the_cli_with_every_row_kept(v1: Path) -> None:
    before = snapshot(v1)
    trials = query(
        v1, "SELECT trial_id, attempts, status, node_id, started_at, finished_at, error FROM trials"
    )
    assert max(t[1] for t in trials) >= 3 and {t[2] for t in trials} == set(FINAL)  # the asset
    done = run_cli("db", "upgrade", "--db", str(v1), cwd=v1.parent)
    assert done.returncode == 0, done.stderr
    assert one_line(done.stdout) == (
        f"{v1}: upgraded schema version 1 -> {HEAD} (revision {revision_id(HEAD)}); "
        f"the old file is kept as {v1}.bak"
    )
    after = snapshot(v1)
    assert after.pop("hpsearch_meta") == [("schema_version", str(HEAD))]
    assert before.pop("hpsearch_meta") == [("schema_version", "1")]
    after["stages"] = without_epoch_budget(after["stages"])
    assert after == before  # studies, stages, trials, params, metrics, flags, the view

    expected = set()
    for trial_id, attempts, status, node, started, finished, error in trials:
        for n in range(1, attempts):  # schema 1 kept nothing but the number of earlier attempts
            expected.add((trial_id, n, None, None, None, None, None))
        ended = status in FINAL
        expected.add(
            (trial_id, attempts, node, started, finished if ended else None,
             status if ended else None, error if ended else None)
        )  # fmt: skip
    assert set(query(v1, "SELECT * FROM attempts")) == expected
    assert query(v1, "SELECT count(*) FROM stage_leases") == [(0,)]  # version 6: no driver yet
    assert query(v1, "PRAGMA foreign_key_check") == []
    assert query(v1, "SELECT count(*) FROM checkpoints") == [(0,)]  # revision 0004: none yet
    assert query(v1, "SELECT count(*) FROM ensembles") == [(0,)]  # revision 0005: none yet

    fresh = v1.parent / "fresh.db"
    Store(str(fresh)).close()
    assert sorted(schema(v1)) == sorted(schema(fresh))  # as if created by this hpsearch

    backup = v1.parent / f"{V1_DB}.bak"
    assert schema(backup) == schema(ASSET / V1_DB)
    assert snapshot(backup) == snapshot(ASSET / V1_DB)
    backup_bytes = backup.read_bytes()
    again = run_cli("db", "upgrade", "--db", str(v1), cwd=v1.parent)
    assert again.returncode == 0, again.stderr
    assert one_line(again.stdout) == f"{v1}: schema version {HEAD} is current: nothing to do"
    assert backup.read_bytes() == backup_bytes


@pytest.mark.parametrize("command", ["coarse", "fine"])
def test_writing_commands_refuse_an_old_database_and_leave_it_unchanged(
    v1: Path, command: str
) -> None:
    original = v1.read_bytes()
    done = run_cli(command, "study.toml", "--db", str(v1), "-q", cwd=v1.parent)
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr) == (
        f"hpsearch: error: {v1}: schema version 1 is older than this hpsearch ({HEAD}): "
        f"run `hpsearch db upgrade --db {v1}` (a copy is kept as {V1_DB}.bak)"
    )
    assert "Traceback" not in done.stderr
    assert v1.read_bytes() == original
    assert not (v1.parent / f"{V1_DB}.bak").exists()
    with pytest.raises(SchemaVersionError, match="older than this hpsearch"):
        Store(str(v1))
    assert v1.read_bytes() == original


def test_reading_commands_read_an_old_database(v1: Path) -> None:
    original = v1.read_bytes()
    listed = run_cli("trials", "v1-asset", "--db", str(v1), "-f", "csv", cwd=v1.parent)
    assert listed.returncode == 0, listed.stderr
    assert len(list(csv.reader(io.StringIO(listed.stdout)))) == 1 + 20  # header, every trial
    counted = run_cli("sql", "SELECT count(*) AS n FROM metrics", "--db", str(v1), "-f", "csv",
                      cwd=v1.parent)  # fmt: skip
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.split() == ["n", str(query(v1, "SELECT count(*) FROM metrics")[0][0])]
    version = run_cli("db", "version", "--db", str(v1), cwd=v1.parent)
    assert version.returncode == 0, version.stderr
    assert one_line(version.stdout) == (
        f"{v1}: schema version 1 (alembic revision none: written before migrations): "
        f"older than this hpsearch ({HEAD}): run `hpsearch db upgrade --db {v1}`"
    )
    exported = v1.parent / "trials.csv"
    done = run_cli("export", "v1-asset", "--db", str(v1), "-o", str(exported), cwd=v1.parent)
    assert done.returncode == 0, done.stderr
    assert len(list(csv.reader(exported.open(newline="")))) == 1 + 20
    assert len(storage.load_trials(str(v1), "v1-asset")) == 20
    assert len(storage.load_metrics(str(v1), "v1-asset", all_attempts=True)) == 128
    assert v1.read_bytes() == original


def test_upgrade_refusals_are_one_line_and_change_nothing(v1: Path) -> None:
    original = v1.read_bytes()
    backup = v1.parent / f"{V1_DB}.bak"
    backup.write_text("a copy the user keeps")
    done = run_cli("db", "upgrade", "--db", str(v1), cwd=v1.parent)
    assert done.returncode == 2
    assert one_line(done.stderr) == (
        f"hpsearch: error: {backup} exists (from an earlier upgrade?): move it away, "
        "then run the upgrade again"
    )
    assert v1.read_bytes() == original and backup.read_text() == "a copy the user keeps"

    newer = v1.parent / "newer.db"
    shutil.copy(v1, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE hpsearch_meta SET value = '99' WHERE key = 'schema_version'")
    done = run_cli("db", "upgrade", "--db", str(newer), cwd=v1.parent)
    assert done.returncode == 2
    assert f"schema version 99 is newer than this hpsearch reads ({HEAD})" in one_line(done.stderr)

    missing = v1.parent / "missing.db"
    done = run_cli("db", "upgrade", "--db", str(missing), cwd=v1.parent)
    assert done.returncode == 2
    assert "no database at" in one_line(done.stderr) and not missing.exists()

    other = v1.parent / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x)")
    done = run_cli("db", "version", "--db", str(other), cwd=v1.parent)
    assert done.returncode == 2
    assert "not an hpsearch database" in one_line(done.stderr)


def test_a_failed_upgrade_changes_nothing_but_keeps_the_copy(v1: Path) -> None:
    with sqlite3.connect(v1) as conn:
        conn.execute("CREATE TABLE attempts (made_by_hand INTEGER)")  # revision 0002 collides
    conn.close()
    before = schema(v1)
    done = run_cli("db", "upgrade", "--db", str(v1), cwd=v1.parent)
    assert done.returncode == 2
    assert one_line(done.stderr) == (
        f"hpsearch: error: {v1}: upgrade failed, nothing changed: table attempts already exists"
    )
    assert schema(v1) == before  # no alembic_version, no half-made revision 0001 -> 0002
    assert rows(v1, "hpsearch_meta") == [("schema_version", "1")]
    assert (v1.parent / f"{V1_DB}.bak").exists()


OPEN_CURRENT = """
import sys
from sqlalchemy import Engine, event
from storage import Store

statements = []
event.listen(Engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
Store(sys.argv[1]).close()
print(len(statements), " ".join(statements[0].split()))
print("alembic" in sys.modules)
"""


def test_opening_a_current_database_takes_one_query_and_no_alembic(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    Store(str(db)).close()
    done = subprocess.run(
        [sys.executable, "-c", OPEN_CURRENT, str(db)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    counted, imported = done.stdout.splitlines()
    assert counted.startswith("1 SELECT hpsearch_meta.value FROM hpsearch_meta WHERE"), counted
    assert imported == "False"


def test_the_package_ships_every_revision() -> None:
    """setuptools' package discovery (pyproject's include patterns) finds the revisions, and
    they are all .py files, so a plain `pip install .` installs them."""
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(where=str(ROOT), include=include)
    assert {"storage.migrations", "storage.migrations.versions"} <= set(packages)
    shipped = (ROOT / "storage" / "migrations").rglob("*")
    assert {p.suffix for p in shipped if p.is_file() and "__pycache__" not in p.parts} == {".py"}
    assert len(script_directory().get_revisions("heads")) == 1


JSON_COLUMNS = {"ranges", "fixed", "proposal"}


def asset_database(db: str, version: int) -> None:
    """The v1 asset's rows in a new database made by the revisions up to `version`."""
    from sqlalchemy import MetaData

    engine = migration_engine(storage.to_url(db))
    with engine.begin() as conn:
        migrate(conn, None, db, to=version)
        tables = MetaData()
        tables.reflect(conn, only=V1_TABLES[1:])
        for name in V1_TABLES[1:]:  # parents first; hpsearch_meta has its row already
            columns = list(tables.tables[name].columns)
            rows = query(ASSET / V1_DB, f"SELECT {', '.join(c.name for c in columns)} FROM {name}")
            values = [
                {c.name: _stored(c, v) for c, v in zip(columns, r, strict=True)} for r in rows
            ]
            conn.execute(tables.tables[name].insert(), values)
    engine.dispose()


def _stored(column: Any, value: Any) -> Any:
    """A value read from the asset's SQLite file as the column takes it (JSON, datetime)."""
    if column.name in JSON_COLUMNS and value:
        return json.loads(value)
    if isinstance(column.type, DateTime) and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def test_a_version_1_postgres_database_upgrades_through_the_cli(pg_url: str) -> None:
    """The v1 asset's rows, in a PostgreSQL database made by revision 0001, upgrade to head."""
    from sqlalchemy import text

    asset_database(pg_url, 1)
    counts = {name: db_rows(pg_url, f"SELECT count(*) FROM {name}")[0][0] for name in V1_TABLES[1:]}
    assert counts["metrics"] > 0 and counts["trials"] > 0

    done = run_cli("db", "upgrade", "--db", pg_url, cwd=ASSET)
    assert done.returncode == 0, done.stderr
    assert f"upgraded schema version 1 -> {HEAD} (revision {revision_id(HEAD)})" in one_line(
        done.stdout
    )
    assert f":{make_url(pg_url).password}@" not in done.stdout  # the password stays hidden
    for name, count in counts.items():
        assert db_rows(pg_url, f"SELECT count(*) FROM {name}")[0][0] == count, name
    assert db_rows(pg_url, "SELECT count(*) FROM stage_leases") == [(0,)]
    attempts = db_rows(pg_url, "SELECT count(*), (SELECT sum(attempts) FROM trials) FROM attempts")
    assert attempts[0][0] == attempts[0][1]  # one row per attempt of every trial
    kinds = db_rows(pg_url, "SELECT DISTINCT json_typeof(params->'lr') FROM trial_results")
    assert kinds == [("number",)]  # version 1's view gave numbers as strings here
    assert db_rows(pg_url, "SELECT count(*) FROM checkpoints") == [(0,)]
    assert run_cli("trials", "v1-asset", "--db", pg_url, cwd=ASSET).returncode == 0
    with create_engine(storage.to_url(pg_url)).connect() as conn:
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert found == revision_id(HEAD)


def _typed(column: str, value: object) -> object:
    """A value read from the v1 asset as the reflected column wants it."""
    if column in JSON_COLUMNS and isinstance(value, str):
        return json.loads(value)
    if column.endswith("_at") and isinstance(value, str):
        from datetime import datetime

        return datetime.fromisoformat(value)
    return value


def test_a_version_4_database_with_checkpoints_upgrades_to_ensembles(db_url: str) -> None:
    """Revision 0005 on SQLite and PostgreSQL: a version-4 database holding the v1 asset's rows
    and a checkpoint upgrades through the CLI with every row kept; an ensemble then records."""
    from sqlalchemy import MetaData

    tables = (*V1_TABLES[1:], "attempts", "checkpoints")
    engine = migration_engine(storage.to_url(db_url))
    with engine.begin() as conn:
        migrate(conn, None, db_url, to=4)
        found = MetaData()
        found.reflect(conn, only=tables)
        for name in V1_TABLES[1:]:  # parents first; hpsearch_meta has its row already
            columns = [c.name for c in found.tables[name].columns]
            rows = query(ASSET / V1_DB, f"SELECT {', '.join(columns)} FROM {name}")
            conn.execute(
                found.tables[name].insert(),
                [{c: _typed(c, v) for c, v in zip(columns, r, strict=True)} for r in rows],
            )
        conn.execute(
            found.tables["checkpoints"].insert(),
            [{"trial_id": 1, "attempt": 1, "epoch": 2, "uri": "/a/model.npz", "bytes": 3,
              "sha256": "0" * 64}],
        )  # fmt: skip
    engine.dispose()
    before = {t: sorted(db_rows(db_url, f"SELECT * FROM {t}"), key=repr) for t in tables}
    assert db_rows(db_url, "SELECT value FROM hpsearch_meta") == [("4",)]

    done = run_cli("db", "upgrade", "--db", db_url, cwd=ASSET)
    assert done.returncode == 0, done.stderr
    assert f"upgraded schema version 4 -> {HEAD}" in one_line(done.stdout)
    after = {t: sorted(db_rows(db_url, f"SELECT * FROM {t}"), key=repr) for t in tables}
    after["stages"] = without_epoch_budget(after["stages"])
    assert after == before
    assert db_rows(db_url, "SELECT count(*) FROM ensembles") == [(0,)]

    store = Store(db_url)
    stage = store.stages(1)[0]
    trials = [t.trial_id for t in store.trials(stage.stage_id)][:2]
    members = [(trials[0], 3, 0.9), (trials[1], 3, 0.8)]
    ensemble_id = store.record_ensemble(1, stage.stage_id, "top", "val", 0.95, members)
    store.close()
    assert db_rows(db_url, "SELECT kind, size, split, accuracy, best_member_accuracy "
                   "FROM ensembles") == [("top", 2, "val", 0.95, 0.9)]  # fmt: skip
    assert sorted(db_rows(db_url, "SELECT * FROM ensemble_members")) == sorted(
        (ensemble_id, *m) for m in members
    )


METRIC_ROWS = "SELECT trial_id, attempt, epoch, name, value FROM metrics"


def test_metric_rows_become_compact_with_every_row_kept(db_url: str, tmp_path: Path) -> None:
    """A database of version 3 (metrics a table with its names as text) upgrades to the
    compact rows: the same rows through the view `metrics`, each name stored once."""
    asset_database(db_url, 3)
    before = sorted(db_rows(db_url, METRIC_ROWS), key=repr)
    assert len({row[:3] for row in before}) < len(before) and None in {r[4] for r in before}
    done = run_cli("db", "upgrade", "--db", db_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "upgraded schema version 3 -> " in one_line(done.stdout)
    assert sorted(db_rows(db_url, METRIC_ROWS), key=repr) == before
    names = [name for (name,) in db_rows(db_url, "SELECT name FROM metric_names ORDER BY name_id")]
    assert names == sorted({row[3] for row in before})  # each once, in alphabetical order
    assert db_rows(db_url, "SELECT count(*) FROM metric_values") == [(len(before),)]

    store = Store(db_url)  # the upgraded database takes new rows: known and new names
    batch = storage.Batch()
    for name, value in ((names[0], 0.25), ("new/metric", float("nan"))):
        row = {"trial_id": 1, "attempt": 9, "epoch": 1, "name": name, "value": value}
        batch.metrics.append(row)
    store.record(batch)
    store.close()
    added = db_rows(db_url, f"{METRIC_ROWS} WHERE attempt = 9 ORDER BY name")
    assert added == sorted([(1, 9, 1, names[0], 0.25), (1, 9, 1, "new/metric", None)])
