"""Reading results: `hpsearch sql` (read-only), `trials`, `export`, and the storage loaders."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import storage
from tests._results_db import shared_study_db
from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_study_db(tmp_path_factory)


def sql_rows(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


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


def test_every_kind_of_write_is_refused_and_the_file_is_unchanged(study_db: Path) -> None:
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


def test_cli_refuses_attach_and_journal_mode_with_one_line_and_exit_2(study_db: Path) -> None:
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


def test_sql_error_is_the_database_message_on_one_line(study_db: Path) -> None:
    done = run_cli("sql", "SELECT nope FROM trials", "--db", str(study_db), cwd=study_db.parent)
    assert done.returncode == 2
    assert done.stderr.strip() == "hpsearch: error: sql: no such column: nope"


def test_missing_database_is_not_created(tmp_path: Path) -> None:
    done = run_cli("sql", "SELECT 1", "--db", "absent.db", cwd=tmp_path)
    assert done.returncode == 2
    assert "no database at" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_csv_and_json_parse_back_and_match_the_table(study_db: Path) -> None:
    query = (
        "SELECT trial_id, status, best_value, best_epoch, params FROM trial_results "
        "ORDER BY trial_id"
    )
    expected = sql_rows(study_db, query)
    outputs = {
        form: run_cli("sql", query, "--db", str(study_db), "--format", form, cwd=study_db.parent)
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
        assert [json.loads(p) for p in frame["params"]] == [json.loads(r[4]) for r in expected]
        values = [None if pd.isna(v) else v for v in frame["best_value"]]
        assert values == [r[2] for r in expected]
    table = outputs["table"].stdout
    assert "16 rows" in table and "best_value" in table
    for trial_id, status, *_ in expected:
        assert re.search(rf"│ {trial_id}\s+│ {status}\s+│", table), (trial_id, status)


def test_trials_top_k_best_first_with_a_column_per_parameter(study_db: Path) -> None:
    done = run_cli(
        "trials", "digits-mlp", "--db", str(study_db), "--top", "3", "-f", "json",
        cwd=study_db.parent,
    )  # fmt: skip
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


def test_trials_filters_by_stage_and_status(study_db: Path) -> None:
    spec = study_db.parent / "study.toml"  # SPEC works as well as NAME
    fine = run_cli("trials", str(spec), "--db", str(study_db), "--stage", "2", "-f", "csv",
                   cwd=study_db.parent)  # fmt: skip
    failed = run_cli("trials", "digits-mlp", "--db", str(study_db), "--status", "failed",
                     "-f", "csv", cwd=study_db.parent)  # fmt: skip
    bad = run_cli("trials", "digits-mlp", "--db", str(study_db), "--status", "done",
                  cwd=study_db.parent)  # fmt: skip
    fine_rows = pd.read_csv(io.StringIO(fine.stdout))
    assert set(fine_rows["stage_kind"]) == {"fine"} and len(fine_rows) == 4
    failed_rows = pd.read_csv(io.StringIO(failed.stdout))
    assert len(failed_rows) == sql_rows(study_db, "SELECT count(*) FROM trials WHERE "
                                        "status = 'failed'")[0][0] > 0  # fmt: skip
    assert bad.returncode == 2 and "--status: must be one of" in bad.stderr


def test_export_wide_csv_and_long_metrics_parquet(study_db: Path, tmp_path: Path) -> None:
    wide, long = tmp_path / "trials.csv", tmp_path / "metrics.parquet"
    a = run_cli("export", "digits-mlp", "--db", str(study_db), "--out", str(wide), cwd=tmp_path)
    b = run_cli("export", "digits-mlp", "--db", str(study_db), "--out", str(long), "--metrics",
                cwd=tmp_path)  # fmt: skip
    c = run_cli("export", "digits-mlp", "--db", str(study_db), "--out", "x.xlsx", cwd=tmp_path)
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


def test_loaders_match_sql(study_db: Path) -> None:
    trials = storage.load_trials(str(study_db), "digits-mlp", stage=1)
    assert len(trials) == 12 and trials["trial_id"].is_unique
    row = trials.set_index("trial_id").loc[1]
    (best,) = sql_rows(study_db, "SELECT best_value FROM trials WHERE trial_id = 1")[0]
    assert row["best_value"] == best and row["stage_kind"] == "coarse"
    val = storage.load_metrics(str(study_db), "digits-mlp", names=["val_acc"], stage=2)
    assert set(val["name"]) == {"val_acc"} and set(val["stage_id"]) == {2}
    assert len(val) == 4 * 4
    wide = storage.metrics_wide(storage.load_metrics(str(study_db), "digits-mlp"))
    assert {"val_acc", "train_acc", "update_ratio/W1", "act_std/h1"} <= set(wide.columns)
    with pytest.raises(storage.StorageError, match="no study named 'nope'"):
        storage.load_trials(str(study_db), "nope")


def readme_sql_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Results in SQL", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def test_readme_sql_examples_run_as_written(study_db: Path) -> None:
    blocks = readme_sql_blocks()
    assert len(blocks) >= 6
    for block in blocks:
        done = run_cli("sql", block, "--db", str(study_db), "-f", "json", cwd=study_db.parent)
        assert done.returncode == 0, (block, done.stderr)
        assert json.loads(done.stdout), f"no rows from README query:\n{block}"


def test_other_schema_versions_and_foreign_files_are_named(study_db: Path, tmp_path: Path) -> None:
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
