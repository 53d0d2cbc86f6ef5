"""PostgreSQL through the real CLI: the same study on SQLite and PostgreSQL gives the same results,
a killed driver resumes, several writers share one server, connection problems are one line."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from sqlalchemy import make_url

import storage
from tests.conftest import db_rows, run_cli

TRAINABLE = """
import math, time

def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        time.sleep(params.get("sleep", 0.0))
        loss = (math.log10(params["lr"]) + 2) ** 2 / epoch + 0.01 * params["width"] / 64
        acc = 1 / (1 + loss) - (0.05 if params["opt"] == "sgd" else 0.0)
        yield {"val_acc": acc, "val_loss": loss, "train_loss": loss * 0.9,
               "big": float("inf") if params["opt"] == "sgd" and epoch == 1 else acc}
"""

SPEC = """
name = "{name}"
trainable = "pg_train:train"
metric = "val_acc"
mode = "max"
seed = 7

[fixed]
sleep = {sleep}

[space]
lr    = {{ type = "loguniform", low = 1e-4, high = 1.0 }}
width = {{ type = "lograndint", low = 8, high = 128 }}
opt   = {{ type = "choice", values = ["sgd", "adam"] }}

[coarse]
trials = {trials}
epochs = 3

[fine]
trials = 4
epochs = 4
schedule = "none"  # ASHA's decisions follow arrival order: two runs would differ
"""


def write_study(directory: Path, name: str = "pg", trials: int = 10, sleep: float = 0.0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pg_train.py").write_text(TRAINABLE)
    spec = directory / f"{name}.toml"
    spec.write_text(SPEC.format(name=name, trials=trials, sleep=sleep))
    return spec


def cli_ok(*args: str, cwd: Path) -> str:
    done = run_cli(*args, cwd=cwd)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def whole_study(db: str, directory: Path, address: str) -> dict[str, object]:
    """coarse, fine, show --json, trials, export parquet, plot, loaders: what a user sees.

    (export to CSV runs on both backends in test_results.py.)"""
    spec = write_study(directory)
    cli_ok("coarse", str(spec), "--db", db, "--address", address, "-q", cwd=directory)
    cli_ok("fine", str(spec), "--db", db, "--address", address, "-q", cwd=directory)
    shown = json.loads(cli_ok("show", "pg", "--db", db, "--json", cwd=directory))
    trials = pd.read_csv(io.StringIO(cli_ok("trials", "pg", "--db", db, "-f", "csv",
                                            cwd=directory)))  # fmt: skip
    cli_ok("export", "pg", "--db", db, "--out", "m.parquet", "--metrics", cwd=directory)
    cli_ok("plot", "pg", "--db", db, "--out", "figs", cwd=directory)
    return {
        "show": shown,
        "trials": trials,
        "metrics": pd.read_parquet(directory / "m.parquet"),
        "plots": sorted(p.name for p in (directory / "figs").iterdir()),
        "load_trials": storage.load_trials(db, "pg"),
        "load_metrics": storage.load_metrics(db, "pg", all_attempts=True),
    }


RUN_DEPENDENT = ["node_id", "started_at", "finished_at"]  # where and when, not what


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in RUN_DEPENDENT if c in frame.columns])


def without_times(shown: object) -> object:
    if isinstance(shown, dict):
        return {k: without_times(v) for k, v in shown.items() if not k.endswith("_at")}
    if isinstance(shown, list):
        return [without_times(v) for v in shown]
    return shown


def test_the_same_study_on_sqlite_and_postgres_gives_the_same_results(
    tmp_path: Path, pg_url: str, ray_address: str
) -> None:
    on_sqlite = whole_study(str(tmp_path / "lite" / "h.db"), tmp_path / "lite", ray_address)
    on_postgres = whole_study(pg_url, tmp_path / "pg", ray_address)
    assert len(on_postgres["load_trials"]) == 10 + 4  # type: ignore[arg-type]
    statuses = set(on_postgres["load_trials"]["status"])  # type: ignore[index]
    assert statuses == {"completed", "diverged"}  # sgd trials report an inf metric
    for key in ("trials", "metrics", "load_trials", "load_metrics"):
        lite, pg = comparable(on_sqlite[key]), comparable(on_postgres[key])  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(lite, pg, check_exact=True, obj=key)
    assert on_postgres["load_trials"]["width"].dtype == "Int64"  # type: ignore[index]
    assert on_postgres["plots"] == on_sqlite["plots"] and on_postgres["plots"]
    assert without_times(on_postgres["show"]) == without_times(on_sqlite["show"])
    inf = on_postgres["load_metrics"].query("name == 'big' and epoch == 1")  # type: ignore[union-attr]
    assert (inf["value"] == float("inf")).any()


def test_a_killed_driver_resumes_on_postgres(tmp_path: Path, pg_url: str, ray_address: str) -> None:
    spec = write_study(tmp_path, trials=12, sleep=0.3)
    args = ["coarse", str(spec), "--db", pg_url, "--address", ray_address, "-q"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", *args], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while completed(pg_url) < 2:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "no trial completed"
            time.sleep(0.3)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert completed(pg_url) < 12, "the stage ended before the kill: make trials slower"
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming coarse stage 1" in resumed.stderr
    assert db_rows(pg_url, "SELECT count(*), count(DISTINCT number) FROM trials") == [(12, 12)]
    assert completed(pg_url) == 12
    duplicates = db_rows(pg_url, "SELECT trial_id, attempt, epoch, name FROM metrics "
                                 "GROUP BY 1, 2, 3, 4 HAVING count(*) > 1")  # fmt: skip
    assert duplicates == []
    latest = storage.load_metrics(pg_url, "pg")
    assert len(latest) == epoch_rows(pg_url) > 0  # each latest attempt has each epoch it ran


def epoch_rows(db: str) -> int:
    """Metric rows the trials' latest attempts must have: 4 per epoch run (diverged stop early)."""
    return int(db_rows(db, "SELECT 4 * sum(epochs_run) FROM trials")[0][0])


def completed(db: str) -> int:
    """Trials that ended (completed, or diverged: the sgd trials report an inf metric)."""
    try:
        return int(db_rows(db, "SELECT count(*) FROM trials "
                               "WHERE status IN ('completed', 'diverged')")[0][0])  # fmt: skip
    except Exception:  # tables not created yet
        return 0


def test_two_drivers_and_a_reader_share_one_server(
    tmp_path: Path, pg_url: str, ray_address: str
) -> None:
    drivers = []
    for name in ("one", "two"):
        spec = write_study(tmp_path, name=name, trials=16, sleep=0.05)
        drivers.append(subprocess.Popen(
            [sys.executable, "-m", "hpsearch", "coarse", str(spec), "--db", pg_url,
             "--address", ray_address, "-q"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    reads = 0
    try:
        while any(d.poll() is None for d in drivers):
            done = run_cli("sql", "SELECT count(*) AS n FROM metrics", "--db", pg_url, "-f",
                           "csv", cwd=tmp_path)  # fmt: skip
            if done.returncode == 0:
                reads += 1
            else:  # only while the first driver creates the tables
                assert "not an hpsearch database" in done.stderr or "cannot read" in done.stderr
        outcomes = [d.communicate(timeout=240) for d in drivers]
    finally:
        for d in drivers:
            if d.poll() is None:
                d.kill()
    assert [d.returncode for d in drivers] == [0, 0], outcomes
    assert reads > 0
    rows = db_rows(pg_url, "SELECT s.name, count(*), count(DISTINCT t.number), "
                           "sum(CASE WHEN t.status IN ('completed', 'diverged') "
                           "THEN 1 ELSE 0 END) "
                           "FROM trials t JOIN stages st ON st.stage_id = t.stage_id "
                           "JOIN studies s ON s.study_id = st.study_id "
                           "GROUP BY s.name ORDER BY s.name")  # fmt: skip
    assert rows == [("one", 16, 16, 16), ("two", 16, 16, 16)]
    assert db_rows(pg_url, "SELECT count(*), count(DISTINCT (trial_id, attempt, epoch, name)) "
                           "FROM metrics") == [(epoch_rows(pg_url),) * 2]  # fmt: skip
    loaded = [len(storage.load_metrics(pg_url, name)) for name in ("one", "two")]
    assert sum(loaded) == epoch_rows(pg_url) and min(loaded) > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_problems_are_one_line_without_the_password(tmp_path: Path, pg_url: str) -> None:
    spec = write_study(tmp_path)
    good = make_url(pg_url)
    secret = "s3cret-pw"
    cases = {
        "server down": (
            good.set(port=free_port(), password=secret),
            "Connection refused",
        ),
        "wrong password": (good.set(password=secret), "password authentication failed"),
        "unknown database": (
            good.set(database="no_such_db_here"),
            'database "no_such_db_here" does not exist',
        ),
        "driver not installed": (
            good.set(drivername="postgresql+psycopg2", password=secret),
            "the database driver is not installed: no module psycopg2",
        ),
    }
    for case, (url, words) in cases.items():
        db = url.render_as_string(hide_password=False)
        shown = url.render_as_string(hide_password=True)
        # no --address: the database is opened (and fails) before a local Ray would start
        runs = [
            run_cli("coarse", str(spec), "--db", db, cwd=tmp_path),
            run_cli("sql", "SELECT 1", "--db", db, cwd=tmp_path),
        ]
        for done in runs:
            assert done.returncode == 2, (case, done.stderr)
            line = done.stderr.strip()
            assert len(line.splitlines()) == 1, (case, line)
            assert line.startswith(f"hpsearch: error: {shown}: "), (case, line)
            assert words in line and secret not in line, (case, line)
    assert db_rows(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
