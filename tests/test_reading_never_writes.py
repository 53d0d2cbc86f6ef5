"""Reading commands never write: every byte of the database is the same after each of them.

Each command runs through the real CLI on (a) an empty zero-byte file, (b) an SQLite file of
another program and (c) a real study. What is compared before and after, for every file in the
database's directory: the main file's bytes and mtime, and every other file's bytes (a new
file fails), with two allowances that hold no database content:
- `NAME-shm`, SQLite's shared-memory WAL index: a reader of a WAL database creates it (32 KiB)
  and writes its read marks there; it is left out;
- an empty `NAME-wal` counts as absent: a read-only connection cannot delete the empty -wal it
  opened. A -wal with content, or any -journal, would fail the test.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from storage import Batch, Mode, Status, Store, load_summary, now
from tests._results_db import shared_study_db
from tests.conftest import run_cli

STUDY = "digits-mlp"  # the study of tests/_results_db.py
COMMANDS = {
    "show": ["show", STUDY],
    "show --json": ["show", STUDY, "--json"],
    "trials": ["trials", STUDY],
    "export csv": ["export", STUDY, "--out", "{out}/trials.csv"],
    "export parquet": ["export", STUDY, "--metrics", "--out", "{out}/metrics.parquet"],
    "plot": ["plot", STUDY, "--out", "{out}/plots"],
    "sql": ["sql", "SELECT count(*) AS n FROM trials"],
}


def snapshot(db: Path) -> dict[str, object]:
    """The database's directory as this module's docstring says it is compared."""
    files: dict[str, object] = {}
    for path in db.parent.iterdir():
        if path.name == f"{db.name}-shm":
            continue
        if path.name == f"{db.name}-wal" and path.stat().st_size == 0:
            continue
        files[path.name] = path.read_bytes()
    files["mtime of the database"] = db.stat().st_mtime_ns
    return files


def empty_file(directory: Path) -> Path:
    db = directory / "empty.db"
    db.touch()
    return db


def other_program(directory: Path) -> Path:
    db = directory / "other.db"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.close()
    return db


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One directory per database, so nothing else lives next to it."""
    study = tmp_path_factory.mktemp("study") / "study.db"
    shutil.copyfile(shared_study_db(tmp_path_factory), study)
    return {
        "empty": empty_file(tmp_path_factory.mktemp("empty")),
        "other": other_program(tmp_path_factory.mktemp("other")),
        "study": study,
    }


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["empty", "other", "study"])
def test_reading_command_leaves_the_database_unchanged(
    databases: dict[str, Path], kind: str, command: str, tmp_path: Path
) -> None:
    db = databases[kind]
    args = [a.format(out=tmp_path) for a in COMMANDS[command]]
    before = snapshot(db)
    done = run_cli(*args, "--db", str(db), cwd=tmp_path)
    assert snapshot(db) == before
    if kind == "study":
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() or any(tmp_path.iterdir())  # printed or wrote its output
        return
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"hpsearch: error: {db}: not an hpsearch database (no hpsearch_meta table): "
        "pick another --db"
    ]
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no output file either


def test_show_text_and_json_name_the_best_trial(databases: dict[str, Path], tmp_path: Path) -> None:
    db = databases["study"]
    with sqlite3.connect(db) as conn:
        best = conn.execute(
            "SELECT number, best_value FROM trials WHERE stage_id = 1 AND status = 'completed' "
            "ORDER BY best_value DESC, number LIMIT 1"
        ).fetchone()
    text = run_cli("show", STUDY, "--db", str(db), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"best: trial {best[0]} val_acc {best[1]:.4g} at epoch" in text.stdout


# -- the summary's reads, ranked and counted by the database ------------------------------
def finished_stage(store: Store, mode: Mode, values: list[float | None]) -> int:
    """A stage whose trial i completed with values[i] (None: failed without a value)."""
    study = store.ensure_study(f"s-{mode}", "trainables.synthetic:train", "val_acc", mode)
    stage = store.begin_stage(
        study.study_id,
        "coarse",
        seed=0,
        epochs=1,
        ranges={"lr": {"type": "uniform", "low": 0, "high": 1}},
        fixed={},
        configs=[{"lr": i / 10} for i in range(len(values))],
        seeds=list(range(len(values))),
    )
    trials = store.trials(stage.stage_id)
    batch = Batch()
    for trial, value in zip(trials, values, strict=True):
        status = Status.FAILED if value is None else Status.COMPLETED
        best = None if value is None else (value, 1)
        batch.finish(
            trial.trial_id, status, attempt=1, error=None, best=best, epochs_run=1, at=now()
        )
    store.record(batch)
    return stage.stage_id


@pytest.mark.parametrize(
    ("mode", "best_number"),
    [(Mode.MAX, 1), (Mode.MIN, 3)],  # ties: the lowest trial number wins
)
def test_summary_best_trial_and_counts_follow_the_mode(
    tmp_path: Path, mode: Mode, best_number: int
) -> None:
    db = str(tmp_path / "h.db")
    store = Store(db)
    finished_stage(store, mode, [0.5, 0.9, None, 0.2, 0.9, 0.2])
    store.close()
    (stage,) = load_summary(db, f"s-{mode}").stages
    assert stage.best is not None
    assert stage.best.number == best_number
    assert stage.best.params == {"lr": best_number / 10}
    assert stage.counts == {"completed": 5, "failed": 1}
    assert stage.flags == ()
