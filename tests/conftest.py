"""Shared fixtures: one local Ray for the whole suite, the CLI as a real subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

ROOT = Path(__file__).resolve().parent.parent
PG_ENV = "HPSEARCH_TEST_PG"
BACKENDS = ["sqlite", "postgresql"]


def pg_server_url() -> str:
    """The test server's URL from HPSEARCH_TEST_PG; a test needing it fails (never skips)."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(
            f"{PG_ENV} is not set: this test needs a PostgreSQL server. Run "
            '`eval "$(scripts/pg-test-server)"` as root (see README, Running the tests), or set '
            f"{PG_ENV}=postgresql://USER:PASSWORD@HOST/DB for a role that may CREATE DATABASE."
        )
    return url


def admin_sql(*statements: str, database: str | None = None) -> None:
    """Run statements as the test server's role (on its own database or `database`), autocommit."""
    url = make_url(storage_url(pg_server_url()))
    engine = create_engine(
        url.set(database=database or url.database), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def storage_url(url: str) -> str:
    from storage import to_url

    return to_url(url)


def new_pg_database() -> str:
    """A fresh, empty database on the test server; its URL (as a user would type it)."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin_sql(f'CREATE DATABASE "{name}"')
    return make_url(pg_server_url()).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    admin_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


_SESSION_DATABASES: list[str] = []


def session_pg_database() -> str:
    """A new database on the test server that lives until the test session ends."""
    url = new_pg_database()
    _SESSION_DATABASES.append(url)
    return url


def pytest_sessionfinish(session: pytest.Session) -> None:
    while _SESSION_DATABASES:
        drop_pg_database(_SESSION_DATABASES.pop())


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped after it."""
    url = new_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """`--db` for a fresh, empty database: an SQLite file path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "h.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session", autouse=True)
def hpsearch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private HPSEARCH_HOME for the suite; local commands start a private Ray by default.

    tests/test_warm_ray.py turns the warm local Ray on where it tests it; whatever warm Ray a
    test leaves is stopped here, so none outlives the suite or lands in the user's home.
    """
    home = tmp_path_factory.mktemp("hpsearch-home")
    saved = {k: os.environ.get(k) for k in ("HPSEARCH_HOME", "HPSEARCH_REUSE_RAY")}
    os.environ["HPSEARCH_HOME"] = str(home)
    os.environ["HPSEARCH_REUSE_RAY"] = "0"
    try:
        yield home
    finally:
        run_cli("ray", "stop", cwd=home, env={"HPSEARCH_HOME": str(home)})
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """A local Ray on 127.0.0.1 that every end-to-end CLI run joins (one start for the suite)."""
    import ray

    context = ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run the real `hpsearch` console script in a subprocess."""
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    full_env.pop("RAY_ADDRESS", None) if env is None or "RAY_ADDRESS" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def query(db: Path, sql: str) -> list[tuple]:
    """Rows of one query on an SQLite results file, as a user's SQL client would see them."""
    if not Path(db).is_file():  # connecting would create an empty file
        raise FileNotFoundError(db)
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def db_rows(db: str, sql: str) -> list[tuple]:
    """Rows of one query on any results database (path or URL), through a plain connection."""
    engine = create_engine(storage_url(db), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def db_execute(db: str, *statements: str) -> None:
    """Change a results database behind hpsearch's back (to set up a broken or old one)."""
    engine = create_engine(storage_url(db), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def descendants(pid: int) -> set[int]:
    """The process and every process below it (from /proc), e.g. a driver and its Ray."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(k) for k in (task / "children").read_text().split()]
            except OSError:  # exited meanwhile
                pass
    return found


def listening(pids: set[int]) -> list[str]:
    """Local addresses of the TCP sockets these processes listen on (from `ss -ltnp`)."""
    table = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [
        line.split()[3] for line in table.splitlines() if any(f"pid={pid}," in line for pid in pids)
    ]
