"""A bad day loses nothing (issue 11): secrets stay hidden, queries stop, bad input is refused
before anything starts. Every case runs the real CLI in a subprocess, as a user would hit it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpsearch.errors import SpecError
from hpsearch.run_options import RunOptions
from hpsearch.runtime.jobs import plan_job
from hpsearch.spec import load_spec
from storage import StageKind, Store, describe, masked
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


@pytest.mark.parametrize(
    "text, shown",
    [
        (SECRET_URL, "postgresql://u:***@127.0.0.1:1/db"),
        (f"mysql+pymysql://root:{SECRET}@db:3306/x?charset=utf8", "mysql+pymysql://root:***@db"),
        (f"failed: 'postgresql://u:{SECRET}@h/db' and 'mysql://a:{SECRET}@h/d'", "a:***@h/d"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),  # no password: unchanged
        ("results.db", "results.db"),
    ],
)
def test_masked_hides_every_password_in_a_text(text: str, shown: str) -> None:
    assert SECRET not in masked(text) and shown in masked(text)
    assert SECRET not in describe(text)


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
    options = RunOptions(trials=None, epochs=None, seed=None, address=None, cpus=None,
                         cpus_per_trial=1.0, gpus_per_trial=0.0, max_retries=2, quiet=True,
                         widen=False, from_stage=None, top=None, artifacts=None)  # fmt: skip
    request = plan_job(StageKind.COARSE, spec, SECRET_URL, None, options)
    assert SECRET not in request.entrypoint and "--db" not in request.entrypoint
    assert request.env_vars["HPSEARCH_DB"] == SECRET_URL
    plain = plan_job(StageKind.COARSE, spec, "postgresql://u@db.internal/h", None, options)
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
        ("sql", "-- the best\\nSELECT 1 AS one"),  # as typed in a shell: a backslash and an n
        ("sql", "-- the best\\n-- of all\\nSELECT 1 AS one"),
    ],
)
def test_a_query_may_start_with_a_comment(args: tuple[str, ...], results_db: Path) -> None:
    done = run_cli(*args, "--db", str(results_db), "-f", "json", cwd=results_db.parent)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"one": 1}]


def test_a_backslash_n_in_the_sql_itself_is_left_alone(results_db: Path) -> None:
    done = run_cli(
        "sql", "-- c\\nSELECT 'a\\nb' AS t", "--db", str(results_db), "-f", "json",
        cwd=results_db.parent,
    )  # fmt: skip
    assert json.loads(done.stdout) == [{"t": "a\\nb"}], done.stderr


def test_a_query_that_is_only_a_comment_is_refused(results_db: Path) -> None:
    done = run_cli("sql", "-- SELECT 1", "--db", str(results_db), cwd=results_db.parent)
    assert "only a comment" in assert_one_line(done)


def test_a_query_from_stdin(results_db: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch", "sql", "-", "--db", str(results_db), "-f", "csv"],
        input="-- from a file\nSELECT 2 AS two\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, "two\n2\n"), done.stderr


# -- case 3: in-memory databases ------------------------------------------------------------
@pytest.mark.parametrize("db", ["sqlite://", ":memory:", "sqlite:///:memory:"])
def test_a_stage_refuses_an_in_memory_database(db: str, spec: Path, tmp_path: Path) -> None:
    """A whole stage used to run into it and exit 0 with nothing kept."""
    done = run_cli("coarse", "study.toml", "--db", db, cwd=tmp_path)
    line = assert_one_line(done)
    assert "in-memory database keeps nothing" in line and "--db results.db" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]  # no file ':memory:'


# -- case 11: validation before anything starts ---------------------------------------------
BAD_SPECS = {
    "overflowing width": ("x = { type = 'uniform', low = -1e308, high = 1e308 }", "space.x"),
    "widening overflows": ("x = { type = 'uniform', low = -1e300, high = 1e308 }", "space.x"),
    "log range too wide": ("x = { type = 'loguniform', low = 1e-300, high = 1e300 }", "space.x"),
    "nan choice": ("x = { type = 'choice', values = [nan, 1.0] }", "finite"),
    "inf choice": ("x = { type = 'choice', values = [inf, 1.0] }", "finite"),
    "bool and int": ("x = { type = 'choice', values = [1, true] }", "mix booleans and numbers"),
    "equal numbers": ("x = { type = 'choice', values = [1, 1.0] }", "distinct"),
    "issue example": ("x = { type = 'choice', values = [nan, inf, 1, true] }", "space.x"),
}


def write_spec(directory: Path, space: str, fixed: str = "") -> Path:
    text = SPEC.replace('x = { type = "uniform", low = 0.0, high = 1.0 }', space)
    path = directory / "bad.toml"
    path.write_text(text.replace("[space]", f"[fixed]\n{fixed}\n\n[space]") if fixed else text)
    return path


@pytest.fixture
def existing_db(tmp_path: Path) -> Path:
    """An hpsearch database in rollback-journal mode: a WAL switch would change its bytes."""
    path = tmp_path / "existing.db"
    Store(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    return path


def assert_untouched(db: Path, before: bytes) -> None:
    assert db.read_bytes() == before
    assert sorted(p.name for p in db.parent.glob(db.name + "*")) == [db.name]  # no -wal/-shm


BAD_FIXED = {
    "datetime": ("when = 2024-01-01T00:00:00", "fixed.when"),
    "date": ("day = 2024-01-01", "fixed.day"),
    "nested time": ("nested = { at = 12:30:00 }", "fixed.nested.at"),
    "nan in a list": ("limits = [1.0, nan]", "fixed.limits[1]"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS), ids=list(BAD_SPECS))
def test_a_bad_range_or_choice_is_a_spec_error(case: str, tmp_path: Path) -> None:
    space, expected = BAD_SPECS[case]
    with pytest.raises(SpecError, match=r"^bad\.toml: space\.x: ") as error:
        load_spec(write_spec(tmp_path, space))
    assert expected in str(error.value)


@pytest.mark.parametrize("case", list(BAD_FIXED), ids=list(BAD_FIXED))
def test_a_fixed_value_json_cannot_store_is_a_spec_error(case: str, tmp_path: Path) -> None:
    fixed, key = BAD_FIXED[case]
    space = 'x = { type = "uniform", low = 0.0, high = 1.0 }'
    with pytest.raises(SpecError, match=rf"^bad\.toml: {re.escape(key)}: "):
        load_spec(write_spec(tmp_path, space, fixed))


@pytest.mark.parametrize(
    "space, fixed",
    [
        (BAD_SPECS["issue example"][0], ""),
        (BAD_SPECS["overflowing width"][0], ""),
        ('x = { type = "uniform", low = 0.0, high = 1.0 }', BAD_FIXED["datetime"][0]),
    ],
    ids=["choice", "range", "fixed"],
)
def test_a_bad_spec_stops_the_cli_before_the_cluster_and_the_database(
    space: str, fixed: str, existing_db: Path
) -> None:
    """These used to fail with a traceback after Ray had started, leaving a study row behind."""
    write_spec(existing_db.parent, space, fixed)
    before = existing_db.read_bytes()
    # A bad --address too: the spec is checked before the cluster and the database.
    done = run_cli(
        "coarse", "bad.toml", "--db", str(existing_db), "--address", "127.0.0.1:1",
        cwd=existing_db.parent,
    )  # fmt: skip
    assert assert_one_line(done).startswith("hpsearch: error: bad.toml: ")
    assert_untouched(existing_db, before)


@pytest.mark.parametrize(
    "command",
    [
        ("coarse", "study.toml"),
        ("show", "reliability"),
        ("sql", "SELECT 1"),
        ("trials", "reliability"),
    ],
    ids=lambda c: c[0],
)
def test_an_unreadable_schema_version_is_one_line_and_changes_nothing(
    command: tuple[str, ...], existing_db: Path, spec: Path
) -> None:
    with sqlite3.connect(existing_db) as conn:
        conn.execute("UPDATE hpsearch_meta SET value = 'abc' WHERE key = 'schema_version'")
    before = existing_db.read_bytes()
    done = run_cli(*command, "--db", str(existing_db), cwd=existing_db.parent)
    assert "unreadable schema version 'abc'" in assert_one_line(done)
    assert_untouched(existing_db, before)


# -- case 12: the cluster address is checked before the database is opened ------------------
def test_a_bad_address_creates_no_database(spec: Path, tmp_path: Path) -> None:
    done = run_cli(
        "coarse", "study.toml", "--db", "new.db", "--address", "127.0.0.1:1", cwd=tmp_path
    )
    assert "--address 127.0.0.1:1" in assert_one_line(done)
    assert not (tmp_path / "new.db").exists()


def test_a_bad_address_leaves_an_existing_database_untouched(existing_db: Path) -> None:
    (existing_db.parent / "study.toml").write_text(SPEC)
    before = existing_db.read_bytes()
    done = run_cli(
        "coarse", "study.toml", "--db", str(existing_db), "--address", "127.0.0.1:1",
        cwd=existing_db.parent,
    )  # fmt: skip
    assert "--address 127.0.0.1:1" in assert_one_line(done)
    assert_untouched(existing_db, before)


def test_submit_refuses_a_working_dir_over_the_upload_limit_before_zipping(
    spec: Path, tmp_path: Path
) -> None:
    """Ray's dashboard takes 100 MiB: a larger dir used to be zipped, uploaded, then refused."""
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "train.npy", "wb") as handle:  # sparse: 101 MiB without writing them
        handle.truncate(101 * 1024 * 1024)
    done = run_cli(
        "submit", "study.toml", "coarse", "--address", "http://127.0.0.1:1", cwd=tmp_path
    )
    line = assert_one_line(done)
    assert "101.0 MiB of files to upload, over the 100 MiB" in line
    assert "largest: data/train.npy (101.0 MiB)" in line


def test_submit_does_not_count_what_is_not_uploaded(spec: Path, tmp_path: Path) -> None:
    (tmp_path / ".rayignore").write_text("data/\n")
    (tmp_path / "data").mkdir()
    for name in ("data/train.npy", "results.db"):  # .rayignore, and hpsearch's own excludes
        with open(tmp_path / name, "wb") as handle:
            handle.truncate(101 * 1024 * 1024)
    done = run_cli(
        "submit", "study.toml", "coarse", "--address", "http://127.0.0.1:1", cwd=tmp_path
    )
    assert "no Ray dashboard reachable" in assert_one_line(done)


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    """A plain web server on 127.0.0.1 (not Ray): what a wrong port often reaches."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("command", [("list",), ("status", "raysubmit_1"), ("logs", "x")])
def test_jobs_against_a_web_server_that_is_not_ray(
    command: tuple[str, ...], web_server: str, tmp_path: Path
) -> None:
    done = run_cli("jobs", *command, "--address", web_server, cwd=tmp_path)
    line = assert_one_line(done)
    assert "a web server answers there, but not Ray's dashboard" in line
    assert "1.9" not in line
