"""A bad day loses nothing (issue 11): secrets stay hidden, queries stop, bad input is refused
before anything starts. Every case runs the real CLI in a subprocess, as a user would hit it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.runtime.jobs import plan_job
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
