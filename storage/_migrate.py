"""Alembic, run in code: creating a new database and `hpsearch db upgrade`.

No env.py and no alembic.ini: the Config is built here with `script_location` pointing at the
revisions shipped in the package. Imported only to create or upgrade a database (Alembic costs
~0.1 s of start-up). Every run is one transaction: SQLite's DDL is made transactional (the
driver would otherwise commit each CREATE on its own), so a failed upgrade changes nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from storage._engine import describe, reason, sqlite_pragmas, to_url, version_in_transaction
from storage._errors import SchemaVersionError, StorageError
from storage._schema import (
    FIRST,
    HEAD,
    backup_name,
    check_writable,
    revision_id,
)

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_LOCK = 0x6870_7365  # an advisory lock id ("hpse"): one migration at a time per server


def script_directory() -> ScriptDirectory:
    """The revisions shipped in `storage/migrations/versions/`."""
    return ScriptDirectory.from_config(_config())


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migration_engine(url_text: str) -> Engine:
    """An engine whose transactions include DDL: on SQLite one BEGIN IMMEDIATE ... COMMIT."""
    engine = create_engine(url_text, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", sqlite_pragmas)
        event.listen(engine, "connect", _driver_leaves_transactions_to_us)
        event.listen(engine, "begin", _begin_immediate)
    return engine


def _driver_leaves_transactions_to_us(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock first: no other writer interleaves


def _one_at_a_time(conn: Connection) -> None:
    """PostgreSQL: hold the migration lock until the transaction ends (re-entrant)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")


def migrate(conn: Connection, version: int | None, db: str, *, to: int = HEAD) -> None:
    """Bring the database of `conn`, inside its transaction, from `version` (None: new) to `to`
    (an older target only for tests)."""
    config = _config()
    script = ScriptDirectory.from_config(config)
    if script.get_current_head() != revision_id(HEAD):
        raise StorageError(
            f"hpsearch is broken: its newest migration is {script.get_current_head()}, "
            f"its models are {revision_id(HEAD)}: reinstall hpsearch"
        )
    _one_at_a_time(conn)
    current = MigrationContext.configure(conn).get_current_revision()
    expected = revision_id(version) if version is not None else None
    if current is None and expected is not None:  # hpsearch 0.1 had no alembic_version
        MigrationContext.configure(conn).stamp(script, expected)
    elif current != expected:
        raise StorageError(
            f"{db}: alembic_version says revision {current} but hpsearch_meta says schema "
            f"version {version}: the database was changed by hand; restore a backup"
        )

    target = revision_id(to)

    def steps(rev: Any, _context: Any) -> Any:
        return script._upgrade_revs(target, rev)

    with EnvironmentContext(config, script, fn=steps, destination_rev=target) as env:
        env.configure(connection=conn)
        env.run_migrations()


def create_schema(url_text: str, db: str) -> None:
    """A new, empty database gets every revision; one created meanwhile by another process is
    only checked."""
    engine = migration_engine(url_text)
    try:
        with engine.begin() as conn:
            _one_at_a_time(conn)  # two drivers on an empty database: the second only checks
            version = version_in_transaction(conn, db)
            if version is None:
                migrate(conn, None, db)
            else:
                check_writable(version, db, sqlite=engine.dialect.name == "sqlite")
    finally:
        engine.dispose()


def upgrade(db: str, before: int) -> Path | None:
    """Migrate an hpsearch database of version `before` in place to this hpsearch's version.

    SQLite: the file is first copied (SQLite's backup API: a consistent copy, WAL included)
    to NAME.bak, which is returned; an existing NAME.bak is never overwritten (the upgrade
    refuses to start).
    """
    name = describe(db)
    if before < FIRST:
        raise SchemaVersionError(
            f"{name}: schema version {before} was never written by hpsearch: cannot upgrade it"
        )
    url_text = to_url(db)
    path = _sqlite_file(url_text)
    backup = _backup(path) if path is not None else None
    engine = migration_engine(url_text)
    try:
        with engine.begin() as conn:
            if version_in_transaction(conn, name) != before:
                raise StorageError(f"{name}: changed while upgrading it: run the upgrade again")
            migrate(conn, before, name)
    except SQLAlchemyError as exc:
        raise StorageError(f"{name}: upgrade failed, nothing changed: {reason(exc)}") from None
    finally:
        engine.dispose()
    return backup


def _sqlite_file(url_text: str) -> Path | None:
    try:
        url = make_url(url_text)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database)


def _backup(path: Path) -> Path:
    target = Path(backup_name(str(path)))
    if target.exists():
        raise StorageError(
            f"{target} exists (from an earlier upgrade?): move it away, then run the upgrade again"
        )
    source = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=ro", uri=True)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise StorageError(f"{path}: cannot copy it to {target}: {exc}") from None
    finally:
        source.close()
    return target
