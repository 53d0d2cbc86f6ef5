"""Bad input through the real CLI: one line naming the problem, exit 2, database unchanged.

Spec and database problems are found before Ray starts, so these runs take about a second.
Trainables that break the API contract at run time fail their trial, not the stage.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from storage import Store
from tests.conftest import run_cli

TRAINABLE = """
def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        yield {"val_acc": params["x"] / epoch}


def not_a_generator(params, *, epochs, seed):
    return [{"val_acc": 1.0}]


def misbehaving(params, *, epochs, seed):
    kind = params["kind"]
    for epoch in range(1, epochs + 1):
        if kind == "nondict":
            yield [0.5]
        elif kind == "nonnumeric":
            yield {"val_acc": "high"}
        elif kind == "nometric":
            yield {"val_loss": 0.1}
        elif kind == "surrogate":  # a name decoded from bytes carelessly
            yield {"val_acc": params["x"], "bad" + chr(0xD800) + "name": 1.0}
        else:
            yield {"val_acc": params["x"] * epoch}

"""

GOOD_SPEC = """name = "bad-input"
trainable = "badmod:train"
metric = "val_acc"

[space]
x = { type = "loguniform", low = 1e-3, high = 1.0 }

[coarse]
trials = 2
epochs = 2
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a trainable module and an existing hpsearch database."""
    path = tmp_path_factory.mktemp("bad_input")
    (path / "badmod.py").write_text(TRAINABLE)
    (path / "good.toml").write_text(GOOD_SPEC)
    store = Store(str(path / "existing.db"))
    study = store.ensure_study("bad-input", "badmod:train", "val_acc", "max")
    stage = store.begin_stage(
        study.study_id,
        "coarse",
        seed=0,
        epochs=2,
        ranges={},
        fixed={},
        configs=[{"x": 0.5}],
        seeds=[1],
    )
    store.finish_stage(stage.stage_id)
    store.close()
    return path


@pytest.fixture
def existing_db(workdir: Path) -> Iterator[Path]:
    """The existing database; the test fails if a command changed it."""
    db = workdir / "existing.db"
    before = db.read_bytes()
    yield db
    assert db.read_bytes() == before, "the database changed"
    assert not _wal_has_frames(db), "the database has uncheckpointed writes"


def with_spec(workdir: Path, name: str, text: str) -> Path:
    path = workdir / name
    path.write_text(text)
    return path


def assert_one_line_error(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("hpsearch: error: "), line
    for phrase in phrases:
        assert phrase in line, line
    return line


def coarse(workdir: Path, spec: str | Path, db: Path, *flags: str) -> subprocess.CompletedProcess:
    return run_cli("coarse", str(spec), "--db", str(db), *flags, cwd=workdir, timeout=120)


def edited(old: str, new: str) -> str:
    assert old in GOOD_SPEC
    return GOOD_SPEC.replace(old, new)


UNIFORM_X = '{ type = "loguniform", low = 1e-3, high = 1.0 }'

# case: (spec file content, or None for a missing file; phrases the error line must contain)
BAD_SPECS: dict[str, tuple[str | bytes | None, list[str]]] = {
    "missing spec file": (None, ["no such spec file"]),
    "empty spec file": ("  \n", ["empty"]),
    "binary spec file": (bytes(range(256)) * 4, ["not a text file"]),
    "TOML syntax error": (edited('metric = "val_acc"', 'metric = "val_acc'), ["TOML syntax error"]),
    "misspelt top-level key": (edited("trainable =", "trainabel ="), ["trainabel", "unknown key"]),
    "misspelt stage key": (edited("epochs = 2", "epoch = 2"), ["coarse.epoch", "unknown key"]),
    "misspelt range key": (edited("high = 1.0", "hihg = 1.0"), ["space.x.hihg", "unknown key"]),
    "unknown space type": (edited('"loguniform"', '"logunifrom"'), ["space.x.type", "logunifrom"]),
    "trials is a string": (edited("trials = 2", 'trials = "ten"'), ["coarse.trials", "integer"]),
    "low is a string": (edited("low = 1e-3", 'low = "small"'), ["space.x.low", "number"]),
    "name is a number": (edited('name = "bad-input"', "name = 3"), ["name", "string"]),
    "range is not a table": (edited(UNIFORM_X, "0.5"), ["space.x", "must be a table"]),
    "zero trials": (edited("trials = 2", "trials = 0"), ["coarse.trials", "> 0"]),
    "negative epochs": (edited("epochs = 2", "epochs = -3"), ["coarse.epochs", "> 0", "-3"]),
    "loguniform low of zero": (edited("low = 1e-3", "low = 0"), ["space.x", "low > 0", "low=0"]),
    "loguniform low below zero": (edited("low = 1e-3", "low = -1"), ["space.x", "low > 0"]),
    "low above high": (
        edited(UNIFORM_X, '{ type = "uniform", low = 2, high = 1 }'),
        ["space.x", "low < high", "low=2", "high=1"],
    ),
    "low equals high": (
        edited(UNIFORM_X, '{ type = "uniform", low = 1, high = 1 }'),
        ["space.x", "low < high"],
    ),
    "empty choice list": (
        edited(UNIFORM_X, '{ type = "choice", values = [] }'),
        ["space.x", "non-empty list"],
    ),
    "unknown trainable module": (
        edited('"badmod:train"', '"nosuchmod:train"'),
        ["nosuchmod", "not found"],
    ),
    "unknown trainable function": (
        edited('"badmod:train"', '"badmod:trian"'),
        ["badmod", "'trian'"],
    ),
    "unknown short trainable name": (
        edited('"badmod:train"', '"resnet"'),
        ["'resnet'", "not a built-in name"],
    ),
    "trainable is not a generator function": (
        edited('"badmod:train"', '"badmod:not_a_generator"'),
        ["not_a_generator", "generator function"],
    ),
}

# case: (flags after `coarse good.toml --db existing.db`, phrases of the error line)
BAD_FLAGS: dict[str, tuple[list[str], list[str]]] = {
    "zero --trials": (["--trials", "0"], ["--trials"]),
    "negative --trials": (["--trials", "-5"], ["--trials"]),
    "zero --epochs": (["--epochs", "0"], ["--epochs"]),
    "misspelt flag": (["--trails", "5"], ["--trails"]),
}


@pytest.fixture(scope="module")
def rejected(workdir: Path) -> dict[str, Any]:
    """Every bad spec and flag case run through the CLI against the existing database.

    The runs go concurrently (each is a fresh Python process that stops before Ray starts).
    """
    db = workdir / "existing.db"
    before = db.read_bytes()
    runs: dict[str, list[str]] = {}
    for i, (case, (content, _)) in enumerate(BAD_SPECS.items()):
        spec = workdir / f"case{i}.toml"
        if isinstance(content, bytes):
            spec.write_bytes(content)
        elif content is not None:
            spec.write_text(content)
        runs[case] = [str(spec)]
    for case, (flags, _) in BAD_FLAGS.items():
        runs[case] = [str(workdir / "good.toml"), *flags]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            case: pool.submit(coarse, workdir, args[0], db, *args[1:])
            for case, args in runs.items()
        }
        results: dict[str, Any] = {case: f.result() for case, f in futures.items()}
    results["database unchanged"] = db.read_bytes() == before and not _wal_has_frames(db)
    return results


def _wal_has_frames(db: Path) -> bool:
    wal = db.with_name(db.name + "-wal")
    return wal.exists() and wal.stat().st_size > 0


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec(case: str, rejected: dict[str, Any]) -> None:
    assert_one_line_error(rejected[case], *BAD_SPECS[case][1])


@pytest.mark.parametrize("case", list(BAD_FLAGS))
def test_bad_flag(case: str, rejected: dict[str, Any]) -> None:
    assert_one_line_error(rejected[case], *BAD_FLAGS[case][1])


def test_bad_spec_error_names_the_spec_file(rejected: dict[str, Any]) -> None:
    line = assert_one_line_error(rejected["misspelt stage key"])
    assert line.startswith("hpsearch: error: case")
    assert "case0.toml" in assert_one_line_error(rejected["missing spec file"])


def test_rejected_commands_leave_the_database_unchanged(rejected: dict[str, Any]) -> None:
    assert rejected["database unchanged"]


def test_db_in_missing_directory(workdir: Path) -> None:
    db = workdir / "no" / "such" / "dir" / "h.db"
    result = coarse(workdir, workdir / "good.toml", db)
    assert_one_line_error(result, str(db.parent), "does not exist")
    assert not (workdir / "no").exists()


@pytest.fixture
def read_only_db(workdir: Path) -> Iterator[Path]:
    """A copy of the database that nobody may write; root ignores modes, so also immutable."""
    db = workdir / "readonly.db"
    shutil.copy(workdir / "existing.db", db)
    db.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(db)], check=True)
    try:
        yield db
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(db)], check=True)
        db.chmod(0o644)


def test_read_only_db(workdir: Path, read_only_db: Path) -> None:
    before = read_only_db.read_bytes()
    result = coarse(workdir, workdir / "good.toml", read_only_db)
    assert_one_line_error(result, "readonly.db", "read-only")
    assert read_only_db.read_bytes() == before


@pytest.mark.parametrize(
    "content", [b"hello, I am a text file\n" * 20, bytes(range(256)) * 16], ids=["text", "binary"]
)
def test_file_that_is_not_a_database(workdir: Path, content: bytes) -> None:
    db = workdir / "notes.db"
    db.write_bytes(content)
    result = coarse(workdir, workdir / "good.toml", db)
    assert_one_line_error(result, "notes.db", "not a database")
    assert db.read_bytes() == content


def test_sqlite_database_of_another_program(workdir: Path) -> None:
    db = workdir / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    before = db.read_bytes()
    result = coarse(workdir, workdir / "good.toml", db)
    assert_one_line_error(result, "other.db", "not an hpsearch database")
    assert db.read_bytes() == before


def test_database_with_a_newer_schema_version(workdir: Path) -> None:
    db = workdir / "newer.db"
    shutil.copy(workdir / "existing.db", db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE hpsearch_meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    before = db.read_bytes()
    result = coarse(workdir, workdir / "good.toml", db)
    assert_one_line_error(result, "newer.db", "schema version 99", "newer", "upgrade")
    assert db.read_bytes() == before


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_address(workdir: Path, existing_db: Path) -> None:
    address = f"127.0.0.1:{closed_port()}"
    result = coarse(workdir, workdir / "good.toml", existing_db, "--address", address)
    assert_one_line_error(result, address, "no Ray cluster reachable")


def test_unreachable_address_from_ray_address_variable(workdir: Path, existing_db: Path) -> None:
    address = f"127.0.0.1:{closed_port()}"
    result = run_cli(
        "coarse",
        str(workdir / "good.toml"),
        "--db",
        str(existing_db),
        cwd=workdir,
        env={"RAY_ADDRESS": address},
        timeout=60,
    )
    assert_one_line_error(result, address, "no Ray cluster reachable")


def test_dashboard_url_given_as_cluster_address(workdir: Path, existing_db: Path) -> None:
    result = coarse(
        workdir, workdir / "good.toml", existing_db, "--address", "http://127.0.0.1:8265"
    )
    assert_one_line_error(result, "http://127.0.0.1:8265", "hpsearch submit")


def test_misbehaving_trainable_fails_trials_not_the_stage(workdir: Path, ray_address: str) -> None:
    spec = with_spec(
        workdir,
        "misbehaving.toml",
        edited('"badmod:train"', '"badmod:misbehaving"')
        .replace('name = "bad-input"', 'name = "misbehaving"')
        .replace("trials = 2", "trials = 40")
        + '\n[space.kind]\ntype = "choice"\n'
        + 'values = ["ok", "nondict", "nonnumeric", "nometric", "surrogate"]\n',
    )
    db = workdir / "misbehaving.db"
    result = coarse(workdir, spec, db, "--address", ray_address, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT p.text, t.status, t.error FROM trials t JOIN params p USING (trial_id) "
            "WHERE p.name = 'kind'"
        ).fetchall()
    by_kind: dict[str, set[tuple[str, str | None]]] = {}
    for kind, status, error in rows:
        by_kind.setdefault(kind, set()).add((status, error))
    assert by_kind == {
        "ok": {("completed", None)},
        "nondict": {("failed", "epoch 1 yielded list, not a dict of metrics")},
        "nonnumeric": {("failed", "epoch 1: metric 'val_acc' is 'high', not a number")},
        "nometric": {
            ("failed", "epoch 1: no value for the spec's metric 'val_acc' (got val_loss)")
        },
        "surrogate": {
            (
                "failed",
                r"epoch 1: metric name 'bad\ud800name' is not valid UTF-8 "
                "(a lone surrogate: decode its bytes first)",
            )
        },
    }
    again = coarse(workdir, spec, db, "--address", ray_address, "--quiet", "--trials", "40")
    assert again.returncode == 0, again.stderr  # a new stage: nothing left poisoned
    with sqlite3.connect(db) as conn:
        second = conn.execute(
            "SELECT t.status, count(*) FROM trials t WHERE stage_id = 2 GROUP BY 1"
        ).fetchall()
    assert dict(second)["completed"] >= 1 and sum(n for _, n in second) == 40


def test_submit_and_jobs_bad_input(workdir: Path) -> None:
    """Checked before any upload: a spec outside --working-dir, no or a dead dashboard."""
    other = workdir / "elsewhere"
    other.mkdir(exist_ok=True)
    dead = f"http://127.0.0.1:{closed_port()}"
    runs = {
        "outside": [
            "submit",
            "good.toml",
            "coarse",
            "--working-dir",
            str(other),
            "--address",
            dead,
        ],
        "dead": ["submit", "good.toml", "coarse", "--address", dead],
        "no address": ["jobs", "list"],
        "bad spec": ["submit", "nosuch.toml", "coarse", "--address", dead],
    }
    env = {"RAY_API_SERVER_ADDRESS": ""}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            case: pool.submit(run_cli, *args, cwd=workdir, env=env, timeout=60)
            for case, args in runs.items()
        }
    assert_one_line_error(futures["outside"].result(), "good.toml", "inside", str(other))
    assert_one_line_error(futures["dead"].result(), dead, "no Ray dashboard reachable")
    assert_one_line_error(futures["no address"].result(), "RAY_API_SERVER_ADDRESS")
    assert_one_line_error(futures["bad spec"].result(), "nosuch.toml", "no such spec file")
