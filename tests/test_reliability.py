"""A bad day loses nothing (issue 11): secrets stay hidden, queries stop, bad input is refused
before anything starts. Every case runs the real CLI in a subprocess, as a user would hit it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.runtime.jobs import plan_job
from storage import Store
from tests.conftest import run_cli

SECRET = "secretpw"
SECRET_URL = f"postgresql://u:{SECRET}@127.0.0.1:1/db"  # nothing listens on port 1

SPEC = """name = "reliability"
trainable = "noop"
metric = "val_acc"

[space]
x = { type = "uniform", low = 0.0, high = 1.0 }

[coarse]
trials = 2
epochs = 1
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(SPEC)
    return path


def assert_one_line(done, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpsearch: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# -- case 9: database passwords never reach the output ------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ("coarse", "study.toml"),
        ("fine", "study.toml"),
        ("show", "reliability"),
        ("show", "reliability", "--json"),
        ("sql", "SELECT 1"),
        ("trials", "reliability"),
        ("export", "reliability", "--out", "x.csv"),
        ("plot", "reliability", "--out", "plots"),
        ("submit", "study.toml", "coarse", "--address", "http://127.0.0.1:1", "--no-wait"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_no_command_prints_the_database_password(
    command: tuple[str, ...], spec: Path, tmp_path: Path
) -> None:
    done = run_cli(*command, "--db", SECRET_URL, cwd=tmp_path, timeout=120)
    line = assert_one_line(done)
    assert SECRET not in done.stdout + done.stderr
    assert "u:***@127.0.0.1" in line or "127.0.0.1:1" in line


def test_a_password_from_the_environment_is_masked_too(spec: Path, tmp_path: Path) -> None:
    done = run_cli("trials", "reliability", cwd=tmp_path, env={"HPSEARCH_DB": SECRET_URL})
    assert "postgresql://u:***@127.0.0.1:1/db" in assert_one_line(done)
    assert SECRET not in done.stdout + done.stderr


def test_an_unparsable_url_is_masked(tmp_path: Path) -> None:
    done = run_cli("sql", "SELECT 1", "--db", f"postgresql://u:{SECRET}@host:port/db", cwd=tmp_path)
    assert_one_line(done)
    assert SECRET not in done.stdout + done.stderr


def test_a_submitted_job_carries_the_password_in_its_environment_not_its_command(
    spec: Path,
) -> None:
    """`jobs list` and the dashboard show the entrypoint to everyone who can reach the cluster."""
    request = plan_job("coarse", spec, SECRET_URL, None, ["--quiet"])
    assert SECRET not in request.entrypoint and "--db" not in request.entrypoint
    assert request.env_vars["HPSEARCH_DB"] == SECRET_URL
    plain = plan_job("coarse", spec, "postgresql://u@db.internal/h", None, [])
    assert "--db postgresql://u@db.internal/h" in plain.entrypoint
    assert "HPSEARCH_DB" not in plain.env_vars


# -- cases 5 and 14: `hpsearch sql` stops, streams, and takes a leading comment ------------
RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "


@pytest.fixture
def results_db(tmp_path: Path) -> Path:
    path = tmp_path / "results.db"
    Store(str(path)).close()
    return path


def test_sql_timeout_stops_a_runaway_query_with_one_line(results_db: Path) -> None:
    before = results_db.read_bytes()
    done = run_cli(
        "sql", RUNAWAY + "SELECT count(*) FROM c", "--db", str(results_db), "--timeout", "1",
        cwd=results_db.parent,
    )  # fmt: skip
    line = assert_one_line(done)
    assert "--timeout 1 s" in line and done.stdout == ""
    assert results_db.read_bytes() == before


def test_ctrl_c_stops_a_query_whose_rows_stream_out(results_db: Path) -> None:
    """The query never ends; its rows arrive anyway (not fetched first), and Ctrl-C ends it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "sql", RUNAWAY + "SELECT x FROM c"]
        + ["--db", str(results_db), "--format", "csv", "--timeout", "0"],
        cwd=results_db.parent,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = [process.stdout.readline() for _ in range(3)]
        assert first == ["x\n", "1\n", "2\n"]
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.strip().splitlines() == [
        "hpsearch: interrupted: the query was stopped (the database is unchanged)"
    ]


def test_a_table_shows_the_first_rows_of_an_endless_query(results_db: Path) -> None:
    done = run_cli(
        "sql", RUNAWAY + "SELECT x FROM c", "--db", str(results_db), cwd=results_db.parent
    )
    assert done.returncode == 0, done.stderr
    assert "│ 10000 │" in done.stdout
    assert "│ 10001 │" not in done.stdout
    assert done.stderr.startswith("note: the first 10000 rows; more not fetched")


@pytest.mark.parametrize(
    "args",
    [
        ("sql", "-- the best\nSELECT 1 AS one"),
        ("sql", "--format", "json", "-- the best\nSELECT 1 AS one"),
        ("sql", "-- the best\nSELECT 1 AS one", "--format", "json"),
    ],
)
def test_a_query_may_start_with_a_comment(args: tuple[str, ...], results_db: Path) -> None:
    done = run_cli(*args, "--db", str(results_db), "-f", "json", cwd=results_db.parent)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"one": 1}]


def test_a_query_from_stdin(results_db: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch", "sql", "-", "--db", str(results_db), "-f", "csv"],
        input="-- from a file\nSELECT 2 AS two\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, "two\n2\n"), done.stderr
