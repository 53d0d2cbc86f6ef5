"""Engines, the one connect hook for SQLite pragmas, the schema check, and sessions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage._errors import SchemaVersionError, StorageError
from storage._models import SCHEMA_VERSION, Base, Meta, table, trial_results_view_sql

BUSY_TIMEOUT_MS = 30_000
DEFAULT_DB = "hpsearch.db"  # when neither --db nor HPSEARCH_DB names one


# `postgresql://` (and libpq's `postgres://`) without a driver name means psycopg 3, the driver
# of the `postgres` extra; SQLAlchemy's own default for it, psycopg2, is not a dependency.
_DEFAULT_DRIVERS = {
    "postgresql://": "postgresql+psycopg://",
    "postgres://": "postgresql+psycopg://",
}


def to_url(db: str) -> str:
    """A plain path becomes an SQLite URL; anything with '://' is taken as an SQLAlchemy URL."""
    if "://" not in db:
        return f"sqlite:///{Path(db).expanduser().absolute()}"
    for plain, with_driver in _DEFAULT_DRIVERS.items():
        if db.startswith(plain):
            return with_driver + db[len(plain) :]
    return db


def describe(db: str) -> str:
    """How to name the database in messages: its path for SQLite, else the URL without password."""
    try:
        url = make_url(to_url(db))
        given = make_url(db) if "://" in db else url
    except ArgumentError:
        return db.split("@", 1)[-1] if "@" in db else db  # never echo a password
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return given.render_as_string(hide_password=True)


_NEW_OR_OURS = f"SELECT count(*) = 0 OR sum(name = '{Meta.__tablename__}') > 0 FROM sqlite_master"


def _set_sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    # WAL rewrites the file header: only for a new file or an hpsearch database, never for a
    # database of another program that --db points at by mistake.
    if cursor.execute(_NEW_OR_OURS).fetchone()[0]:
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _check_sqlite_path(db: str, url_text: str) -> None:
    url = make_url(url_text)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    if not path.parent.is_dir():
        raise StorageError(f"{db}: directory {path.parent} does not exist: create it or pick --db")
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError(f"{db}: file is read-only: make it writable or pick another --db")
    if not path.exists() and not os.access(path.parent, os.W_OK):
        raise StorageError(f"{db}: directory {path.parent} is not writable: pick another --db")


def new_engine(db: str, url_text: str, **kwargs: Any) -> Engine:
    """`create_engine`, with a bad URL or a missing driver as one line (no password in it)."""
    try:
        return create_engine(url_text, **kwargs)
    except ModuleNotFoundError as exc:
        extra = " (pip install 'hpsearch[postgres]')" if exc.name == "psycopg" else ""
        raise StorageError(
            f"{describe(db)}: the database driver is not installed: no module {exc.name}{extra}"
        ) from None
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"{describe(db)}: not a usable database URL ({exc})") from None


def open_engine(db: str) -> Engine:
    """Open (creating if new) a writable hpsearch database and check its schema version."""
    url_text = to_url(db)
    _check_sqlite_path(db, url_text)
    engine = new_engine(db, url_text)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    name = describe(db)
    try:
        _ensure_schema(engine, name)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StorageError(f"{name}: cannot open database: {reason(exc)}") from None
    except StorageError:
        engine.dispose()
        raise
    return engine


def driver_error(exc: BaseException) -> BaseException:
    """The database driver's own exception behind a SQLAlchemy error, else the error itself."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def reason(exc: SQLAlchemyError) -> str:
    """The database's own message, on one line (PostgreSQL's DETAIL lines joined to it)."""
    orig = driver_error(exc)
    return " ".join(str(orig).split()) if orig is not exc else str(exc).splitlines()[0]


# Any constant: the key of the PostgreSQL advisory lock held while one process creates tables.
_SCHEMA_LOCK_KEY = 0x68707365  # "hpse"


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, one process at a time checks and creates the schema: two drivers starting
    on an empty database would otherwise both create it (one failing on duplicate types)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            conn.commit()


def _ensure_schema(engine: Engine, db: str) -> None:
    with _schema_lock(engine):
        _check_or_create_schema(engine, db)


def _check_or_create_schema(engine: Engine, db: str) -> None:
    tables = set(inspect(engine).get_table_names())
    if not tables:
        if _create_schema(engine):
            return
        tables = set(inspect(engine).get_table_names())  # another process created it meanwhile
    if Meta.__tablename__ not in tables:
        raise StorageError(
            f"{db}: not an hpsearch database (it has tables but no {Meta.__tablename__}): "
            "pick another --db"
        )
    check_version(engine, db)


def _create_schema(engine: Engine) -> bool:
    """Create the schema unless another process just did; False if it did."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            # pysqlite runs DDL outside transactions: without this a second driver starting
            # at the same moment sees tables without the schema version row, or creates twice
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        if inspect(conn).get_table_names():
            return False
        Base.metadata.create_all(conn)
        conn.execute(text(trial_results_view_sql(engine.dialect.name)))
        conn.execute(
            table(Meta).insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}]
        )
    return True


def check_version(engine: Engine, db: str) -> None:
    with engine.connect() as conn:
        found = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar()
    version = int(found) if found is not None else 0
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{db}: schema version {version} is newer than this hpsearch reads "
            f"({SCHEMA_VERSION}): upgrade with `pip install -U hpsearch`"
        )
    if version < SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{db}: schema version {version} is older than this hpsearch writes "
            f"({SCHEMA_VERSION}): keep using the older hpsearch for it or start a new --db"
        )


@contextmanager
def session_scope(factory: sessionmaker[Session], db: str) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, database errors as StorageError."""
    session = factory()
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise StorageError(f"{db}: {reason(exc)}") from None
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
