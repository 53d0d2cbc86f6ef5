"""Reading results: `hpsearch sql` (read-only), `trials`, `export`, and the storage loaders.

The reading tests run on SQLite and on PostgreSQL (`study_db` is parametrized); the read-only
suites of each backend are below, since each has its own ways to write.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import uuid
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import make_url

import storage
from tests._results_db import SPEC, shared_study_db
from tests.conftest import BACKENDS, ROOT, admin_sql, db_execute, db_rows, run_cli


@pytest.fixture(scope="module", params=BACKENDS)
def study_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The shared study: an SQLite path or a PostgreSQL URL (both work as --db)."""
    return shared_study_db(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shared_study_db(tmp_path_factory, "sqlite"))


def sql_rows(db: str | Path, query: str) -> list[tuple]:
    return db_rows(str(db), query)


def as_json(value: object) -> object:
    """A JSON column as read back: text on SQLite, already parsed by psycopg on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def files_and_bytes(directory: Path) -> tuple[set[str], bytes]:
    return {p.name for p in directory.iterdir()}, (directory / "study.db").read_bytes()


WRITES = [
    ("INSERT", "INSERT INTO studies (name) VALUES ('x')"),
    ("UPDATE", "UPDATE trials SET status = 'completed'"),
    ("DELETE", "DELETE FROM metrics"),
    ("DROP", "DROP TABLE metrics"),
    ("DROP", "DROP VIEW trial_results"),
    ("CREATE", "CREATE TABLE notes (x)"),
    ("CREATE", "CREATE TEMP TABLE notes (x)"),
    ("CREATE", "CREATE INDEX i ON trials (seed)"),
    ("ALTER TABLE", "ALTER TABLE trials ADD COLUMN z"),
    ("ATTACH", "ATTACH 'new.db' AS other"),
    ("VACUUM", "VACUUM"),
    ("VACUUM", "VACUUM INTO 'copy.db'"),
    ("REINDEX", "REINDEX"),
    ("PRAGMA journal_mode=DELETE", "PRAGMA journal_mode=DELETE"),
    ("PRAGMA query_only=0", "PRAGMA query_only = 0"),
    ("PRAGMA user_version=7", "PRAGMA user_version = 7"),
    ("INSERT", "WITH x AS (SELECT 1) INSERT INTO studies (name) SELECT 'y' FROM x"),
]


def test_every_kind_of_write_is_refused_and_the_file_is_unchanged(sqlite_db: Path) -> None:
    study_db = sqlite_db
    directory = study_db.parent
    storage.run_sql(str(study_db), "SELECT 1")  # a reader may leave the usual -wal/-shm files
    before = files_and_bytes(directory)
    for word, statement in WRITES:
        with pytest.raises(storage.StorageError) as info:
            storage.run_sql(str(study_db), statement)
        assert str(info.value) == (
            f"sql: read-only: {word} is not allowed (hpsearch sql never changes the database)"
        ), statement
    assert files_and_bytes(directory) == before  # no new.db / copy.db, same bytes
    assert sql_rows(study_db, "SELECT count(*) FROM studies") == [(1,)]


def test_cli_refuses_attach_and_journal_mode_with_one_line_and_exit_2(sqlite_db: Path) -> None:
    study_db = sqlite_db
    directory = study_db.parent
    storage.run_sql(str(study_db), "SELECT 1")
    before = files_and_bytes(directory)
    for statement, word in [
        ("ATTACH DATABASE 'fresh.db' AS f", "ATTACH"),
        ("PRAGMA journal_mode=DELETE", "PRAGMA journal_mode=DELETE"),
        ("insert into metrics values (1, 1, 99, 'x', 1.0)", "INSERT"),
    ]:
        done = run_cli("sql", statement, "--db", str(study_db), cwd=directory)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == (
            f"hpsearch: error: sql: read-only: {word} is not allowed "
            "(hpsearch sql never changes the database)"
        )
        assert done.stdout == ""
    assert files_and_bytes(directory) == before


def test_sql_error_is_the_database_message_on_one_line(study_db: str, tmp_path: Path) -> None:
    done = run_cli("sql", "SELECT nope FROM trials", "--db", study_db, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() in (
        "hpsearch: error: sql: no such column: nope",
        'hpsearch: error: sql: column "nope" does not exist LINE 1: SELECT nope FROM trials ^',
    )


def test_missing_database_is_not_created(tmp_path: Path) -> None:
    done = run_cli("sql", "SELECT 1", "--db", "absent.db", cwd=tmp_path)
    assert done.returncode == 2
    assert "no database at" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_csv_and_json_parse_back_and_match_the_table(study_db: str, tmp_path: Path) -> None:
    query = (
        "SELECT trial_id, status, best_value, best_epoch, params FROM trial_results "
        "ORDER BY trial_id"
    )
    expected = sql_rows(study_db, query)
    outputs = {
        form: run_cli("sql", query, "--db", study_db, "--format", form, cwd=tmp_path)
        for form in ("csv", "json", "table")
    }
    assert all(done.returncode == 0 for done in outputs.values()), outputs
    from_csv = pd.read_csv(io.StringIO(outputs["csv"].stdout))
    from_json = pd.DataFrame(json.loads(outputs["json"].stdout))
    assert list(from_csv.columns) == ["trial_id", "status", "best_value", "best_epoch", "params"]
    assert list(from_json.columns) == list(from_csv.columns)
    assert len(from_csv) == len(from_json) == len(expected) == 16
    for frame in (from_csv, from_json):
        assert list(frame["trial_id"]) == [r[0] for r in expected]
        assert list(frame["status"]) == [r[1] for r in expected]
        assert [json.loads(p) for p in frame["params"]] == [as_json(r[4]) for r in expected]
        values = [None if pd.isna(v) else v for v in frame["best_value"]]
        assert values == [r[2] for r in expected]
    table = outputs["table"].stdout
    assert "16 rows" in table and "best_value" in table
    for trial_id, status, *_ in expected:
        assert re.search(rf"│ {trial_id}\s+│ {status}\s+│", table), (trial_id, status)


def test_trials_top_k_best_first_with_a_column_per_parameter(study_db: str, tmp_path: Path) -> None:
    done = run_cli(
        "trials", "digits-mlp", "--db", study_db, "--top", "3", "-f", "json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    best = sql_rows(
        study_db,
        "SELECT trial_id, best_value FROM trials WHERE status = 'completed' "
        "ORDER BY best_value DESC, trial_id LIMIT 3",
    )
    assert [(r["trial_id"], r["best_value"]) for r in rows] == best
    assert {"lr", "reg", "batch", "update"} <= set(rows[0])
    lr = sql_rows(study_db, f"SELECT value FROM params WHERE trial_id = {best[0][0]} AND name='lr'")
    assert rows[0]["lr"] == lr[0][0] and isinstance(rows[0]["batch"], int)


def test_trials_filters_by_stage_and_status(study_db: str, tmp_path: Path) -> None:
    spec = tmp_path / "study.toml"  # SPEC works as well as NAME
    spec.write_text(SPEC)
    fine = run_cli("trials", str(spec), "--db", study_db, "--stage", "2", "-f", "csv",
                   cwd=tmp_path)  # fmt: skip
    failed = run_cli("trials", "digits-mlp", "--db", study_db, "--status", "failed",
                     "-f", "csv", cwd=tmp_path)  # fmt: skip
    bad = run_cli("trials", "digits-mlp", "--db", study_db, "--status", "done",
                  cwd=tmp_path)  # fmt: skip
    fine_rows = pd.read_csv(io.StringIO(fine.stdout))
    assert set(fine_rows["stage_kind"]) == {"fine"} and len(fine_rows) == 4
    failed_rows = pd.read_csv(io.StringIO(failed.stdout))
    assert len(failed_rows) == sql_rows(study_db, "SELECT count(*) FROM trials WHERE "
                                        "status = 'failed'")[0][0] > 0  # fmt: skip
    assert bad.returncode == 2 and "--status: must be one of" in bad.stderr


def test_export_wide_csv_and_long_metrics_parquet(study_db: str, tmp_path: Path) -> None:
    wide, long = tmp_path / "trials.csv", tmp_path / "metrics.parquet"
    a = run_cli("export", "digits-mlp", "--db", study_db, "--out", str(wide), cwd=tmp_path)
    b = run_cli("export", "digits-mlp", "--db", study_db, "--out", str(long), "--metrics",
                cwd=tmp_path)  # fmt: skip
    c = run_cli("export", "digits-mlp", "--db", study_db, "--out", "x.xlsx", cwd=tmp_path)
    assert a.returncode == b.returncode == 0, (a.stderr, b.stderr)
    trials = pd.read_csv(wide)
    assert len(trials) == 16
    assert {"lr", "reg", "batch", "update", "best_value", "status"} <= set(trials.columns)
    assert set(trials["update"]) == {"sgd", "adam", "bogus"}
    metrics = pd.read_parquet(long)
    assert list(metrics.columns) == storage.METRIC_COLUMNS
    assert len(metrics) == sql_rows(study_db, "SELECT count(*) FROM metrics")[0][0]
    one = metrics[(metrics["trial_id"] == 1) & (metrics["name"] == "val_acc")]
    assert list(one["epoch"]) == [1, 2]
    assert list(one["value"]) == [
        v
        for (v,) in sql_rows(
            study_db,
            "SELECT value FROM metrics WHERE trial_id = 1 AND name = 'val_acc' ORDER BY epoch",
        )  # fmt: skip
    ]
    assert c.returncode == 2 and "must end in .csv or .parquet" in c.stderr


def test_loaders_match_sql(study_db: str) -> None:
    trials = storage.load_trials(study_db, "digits-mlp", stage=1)
    assert len(trials) == 12 and trials["trial_id"].is_unique
    row = trials.set_index("trial_id").loc[1]
    (best,) = sql_rows(study_db, "SELECT best_value FROM trials WHERE trial_id = 1")[0]
    assert row["best_value"] == best and row["stage_kind"] == "coarse"
    val = storage.load_metrics(study_db, "digits-mlp", names=["val_acc"], stage=2)
    assert set(val["name"]) == {"val_acc"} and set(val["stage_id"]) == {2}
    assert (
        len(val)
        == sql_rows(
            study_db,
            "SELECT count(*) FROM metrics m JOIN trials t USING (trial_id) "
            "WHERE t.stage_id = 2 AND m.name = 'val_acc'",
        )[0][0]
    )
    wide = storage.metrics_wide(storage.load_metrics(study_db, "digits-mlp"))
    assert {"val_acc", "train_acc", "update_ratio/W1", "act_std/h1"} <= set(wide.columns)
    with pytest.raises(storage.StorageError, match="no study named 'nope'"):
        storage.load_trials(study_db, "nope")


def readme_sql_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Results in SQL", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def test_readme_sql_examples_run_as_written(sqlite_db: Path) -> None:
    study_db = sqlite_db  # the README's examples use SQLite's functions
    blocks = readme_sql_blocks()
    assert len(blocks) >= 6
    for block in blocks:
        done = run_cli("sql", block, "--db", str(study_db), "-f", "json", cwd=study_db.parent)
        assert done.returncode == 0, (block, done.stderr)
        assert json.loads(done.stdout), f"no rows from README query:\n{block}"


def test_other_schema_versions_and_foreign_files_are_named(sqlite_db: Path, tmp_path: Path) -> None:
    study_db = sqlite_db
    newer = tmp_path / "newer.db"
    newer.write_bytes(study_db.read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE hpsearch_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(storage.SchemaVersionError, match="schema version 99 is newer"):
        storage.run_sql(str(newer), "SELECT 1")
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (x)")
    before = foreign.read_bytes()
    with pytest.raises(storage.StorageError, match="not an hpsearch database"):
        storage.load_trials(str(foreign), "digits-mlp")
    assert foreign.read_bytes() == before


# -- PostgreSQL: read-only for real ------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_study_db(tmp_path_factory, "postgresql")


def server_state(db: str) -> dict[str, object]:
    """A checksum of every table's rows, and the objects, roles and settings around them."""
    tables = [t for (t,) in sql_rows(db, "SELECT tablename FROM pg_tables "
                                         "WHERE schemaname = 'public' ORDER BY 1")]  # fmt: skip
    state: dict[str, object] = {
        table: sql_rows(
            db,
            f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' "
            f"ORDER BY x::text), '')) FROM {table} x",
        )  # fmt: skip
        for table in tables
    }
    state["objects"] = sql_rows(
        db,
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
    )
    state["functions"] = sql_rows(db, "SELECT count(*) FROM pg_proc")
    state["me"] = sql_rows(db, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    state["intruder"] = sql_rows(db, "SELECT count(*) FROM pg_roles WHERE rolname = 'intruder'")
    state["large_objects"] = sql_rows(db, "SELECT count(*) FROM pg_largeobject_metadata")
    state["sequences"] = sql_rows(db, "SELECT sequencename, last_value FROM pg_sequences "
                                      "ORDER BY 1")  # fmt: skip
    state["settings"] = sql_rows(db, "SELECT setconfig::text FROM pg_db_role_setting ORDER BY 1")
    return state


PG_WRITES = [
    ("INSERT", "INSERT INTO studies (name) VALUES ('x')"),
    ("UPDATE", "UPDATE trials SET status = 'completed'"),
    ("DELETE", "DELETE FROM metrics"),
    ("DROP", "DROP TABLE metrics"),
    ("DROP", "DROP VIEW trial_results"),
    ("CREATE", "CREATE TABLE notes (x int)"),
    ("CREATE", "CREATE TEMP TABLE notes (x int)"),
    ("CREATE", "CREATE INDEX i ON trials (seed)"),
    ("CREATE", "CREATE ROLE intruder SUPERUSER LOGIN"),
    ("ALTER", "ALTER TABLE trials ADD COLUMN z int"),
    ("TRUNCATE", "TRUNCATE metrics"),
    ("GRANT", "GRANT ALL ON trials TO PUBLIC"),
    ("COPY", "COPY metrics FROM '/etc/hostname'"),
    ("COPY", "COPY (SELECT 1) TO '/tmp/hpsearch-copy-test'"),
    ("DO", "DO $$BEGIN DELETE FROM metrics; END$$"),
    ("CALL", "CALL nothing()"),
    ("VACUUM", "VACUUM metrics"),
    ("LOAD", "LOAD 'plpgsql'"),
    ("COMMIT", "COMMIT"),
    ("SET", "SET default_transaction_read_only = off"),
    ("more than one statement", "SELECT 1; COMMIT; DROP TABLE metrics"),
    ("more than one statement", "SELECT 1; DELETE FROM metrics"),
    ("more than one statement", "/* ; */ SELECT ';'; DELETE FROM metrics"),
    ("a write inside WITH", "WITH x AS (DELETE FROM metrics RETURNING 1) SELECT count(*) FROM x"),
    ("SELECT FOR UPDATE", "SELECT * FROM trials FOR UPDATE"),
    ("DELETE", "EXPLAIN ANALYZE DELETE FROM metrics"),
    ("function set_config", "SELECT set_config('default_transaction_read_only', 'off', false)"),
    ("function pg_terminate_backend", "SELECT pg_terminate_backend({pid})"),
    ("function pg_cancel_backend", "SELECT pg_catalog.pg_cancel_backend({pid})"),
    ("function pg_terminate_backend", 'SELECT "pg_terminate_backend"({pid})'),
    ("function lo_import", "SELECT lo_import('/etc/hostname')"),
    ("function lo_export", "SELECT lo_export(1, '/tmp/hpsearch-lo-test')"),
    ("function nextval", "SELECT nextval('trials_trial_id_seq')"),
    ("function setval", "SELECT setval('trials_trial_id_seq', 1000)"),
    ("function pg_reload_conf", "SELECT PG_RELOAD_CONF()"),
    ("function pg_advisory_lock", "SELECT pg_advisory_lock(1)"),
    ("function query_to_xml", "SELECT query_to_xml('DELETE FROM metrics', true, true, '')"),
    ("a U& (Unicode-escaped) name or string", 'SELECT U&"pg_reload_conf"()'),
]


def test_postgres_refuses_every_kind_of_write_and_nothing_changes(postgres_db: str) -> None:
    import psycopg

    other = psycopg.connect(make_url(postgres_db).render_as_string(hide_password=False))
    try:
        pid = other.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        before = server_state(postgres_db)
        for word, statement in PG_WRITES:
            with pytest.raises(storage.StorageError) as info:
                storage.run_sql(postgres_db, statement.format(pid=pid))
            assert str(info.value) == (
                f"sql: read-only: {word} is not allowed (hpsearch sql never changes the database)"
            ), statement
        assert other.execute("SELECT 1").fetchone() == (1,)  # not terminated
    finally:
        other.close()
    assert server_state(postgres_db) == before
    assert not any(Path(f"/tmp/hpsearch-{name}-test").exists() for name in ("copy", "lo"))


def test_postgres_reading_sql_still_works(postgres_db: str) -> None:
    result = storage.run_sql(
        postgres_db,
        "WITH c AS (SELECT status, count(*) AS n FROM trials GROUP BY status) "
        "SELECT '100%' AS pct, random() < 2 AS r, sum(n) AS n, round(0.125, 2) AS x, "
        "'{\"a\": 1}'::jsonb AS j FROM c;",
    )
    assert result.rows == [("100%", True, 16.0, 0.13, '{"a": 1}')]
    assert storage.run_sql(postgres_db, "SHOW transaction_read_only").rows == [("on",)]


def test_postgres_cli_refusals_are_one_line_and_exit_2(postgres_db: str, tmp_path: Path) -> None:
    before = server_state(postgres_db)
    for statement, word in [
        ("SELECT 1; COMMIT; DROP TABLE metrics", "more than one statement"),
        ("select pg_terminate_backend(1)", "function pg_terminate_backend"),
        ("insert into metrics values (1, 1, 99, 'x', 1.0)", "INSERT"),
    ]:
        done = run_cli("sql", statement, "--db", postgres_db, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == (
            f"hpsearch: error: sql: read-only: {word} is not allowed "
            "(hpsearch sql never changes the database)"
        )
        assert done.stdout == ""
    assert server_state(postgres_db) == before


def readme_reader_role_sql() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### A read-only role for readers", 1)[1].split("\n#", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.S)[0]


def test_a_read_only_role_from_the_readme_reads_everything(
    postgres_db: str, tmp_path: Path
) -> None:
    url = make_url(postgres_db)
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    setup = (
        readme_reader_role_sql()
        .replace("hpsearch_reader", reader)
        .replace("DATABASE hpsearch", f'DATABASE "{url.database}"')
        .replace("FOR ROLE hpsearch ", f"FOR ROLE {url.username} ")
    )
    statements = [s.strip() for s in setup.split(";") if s.strip()]
    admin_sql(*statements, database=url.database)
    reader_db = url.set(username=reader, password="change-me").render_as_string(hide_password=False)
    try:
        trials = run_cli("trials", "digits-mlp", "--db", reader_db, "-f", "csv", cwd=tmp_path)
        show = run_cli("show", "digits-mlp", "--db", reader_db, cwd=tmp_path)
        export = run_cli("export", "digits-mlp", "--db", reader_db, "--out", "m.parquet",
                         "--metrics", cwd=tmp_path)  # fmt: skip
        count = run_cli("sql", "SELECT count(*) FROM metrics", "--db", reader_db, "-f", "csv",
                        cwd=tmp_path)  # fmt: skip
        for done in (trials, show, export, count):
            assert done.returncode == 0, done.stderr
        assert len(pd.read_csv(io.StringIO(trials.stdout))) == 16
        assert (
            len(pd.read_parquet(tmp_path / "m.parquet"))
            == sql_rows(postgres_db, "SELECT count(*) FROM metrics")[0][0]
        )
        assert storage.load_trials(reader_db, "digits-mlp").equals(
            storage.load_trials(postgres_db, "digits-mlp")
        )
        with pytest.raises(Exception, match="permission denied for table metric_values"):
            # the role cannot write even when it turns its read-only default off
            db_execute(reader_db, "SET TRANSACTION READ WRITE", "DELETE FROM metric_values")
        with pytest.raises(storage.StorageError, match="cannot execute INSERT in a read-only"):
            storage.Store(reader_db).ensure_study("other", "noop", "val_acc", "max")
    finally:
        admin_sql(f"DROP OWNED BY {reader}", f"DROP ROLE {reader}", database=url.database)
