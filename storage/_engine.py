"""Engines, the one connect hook for SQLite pragmas, the schema check, and sessions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage._errors import StorageError, masked
from storage._models import Meta, table
from storage._schema import check_writable, parsed_version
from storage._terms import BUSY_TIMEOUT_MS

# `postgresql://` (and libpq's `postgres://`) without a driver name means psycopg 3, the driver
# of the `postgres` extra; SQLAlchemy's own default for it, psycopg2, is not a dependency.
_DEFAULT_DRIVERS = {
    "postgresql://": "postgresql+psycopg://",
    "postgres://": "postgresql+psycopg://",
}


def to_url(db: str) -> str:
    """A plain path becomes an SQLite URL; anything with '://' is taken as an SQLAlchemy URL."""
    if db == ":memory:":  # SQLite's name for an in-memory database, not a file name
        return "sqlite://"
    if "://" not in db:
        return f"sqlite:///{Path(db).expanduser().absolute()}"
    for plain, with_driver in _DEFAULT_DRIVERS.items():
        if db.startswith(plain):
            return with_driver + db[len(plain) :]
    return db


def parse_url(db: str) -> URL:
    """The SQLAlchemy URL of a --db value; a malformed one is a StorageError without password."""
    try:
        return make_url(to_url(db))
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        why = masked(str(exc))
        raise StorageError(f"{masked(db)}: not a usable database URL ({why})") from None


def describe(db: str) -> str:
    """How to name the database in messages: its path for SQLite, else the URL without password."""
    try:
        url = parse_url(db)
        given = make_url(db) if "://" in db else url
    except (StorageError, ArgumentError, ValueError):
        return masked(db)
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return given.render_as_string(hide_password=True)


_meta = table(Meta)
_VERSION = select(_meta.c.value).where(_meta.c.key == "schema_version")  # MySQL: `key` quoted


def stored_version(conn: Connection, db: str) -> int | None:
    """The database's schema version, or None when it has no hpsearch_meta table.

    One query for an hpsearch database; only when that fails are the tables listed. Must not
    be called inside a transaction of the caller's (a failed query is rolled back).
    """
    try:
        found = conn.execute(_VERSION).scalar()
    except DBAPIError:
        conn.rollback()  # PostgreSQL: the failed query aborted the transaction
        if Meta.__tablename__ in inspect(conn).get_table_names():
            raise  # the table is there: the failure is the database's own, report it
        return None
    return parsed_version(found, db)


def version_in_transaction(conn: Connection, db: str) -> int | None:
    """`stored_version` for a connection inside a transaction: looks before it reads."""
    if not inspect(conn).has_table(Meta.__tablename__):
        return None
    return parsed_version(conn.execute(_VERSION).scalar(), db)


_NEW_OR_OURS = f"SELECT count(*) = 0 OR sum(name = '{Meta.__tablename__}') > 0 FROM sqlite_master"


def sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    # WAL rewrites the file header: only for a new file or an hpsearch database, never for a
    # database of another program that --db points at by mistake.
    if cursor.execute(_NEW_OR_OURS).fetchone()[0]:
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def in_memory(url: URL) -> bool:
    """An SQLite database that lives only as long as its connection."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or "mode=memory" in database
        or (url.query.get("mode") == "memory")
    )


def _check_sqlite_path(db: str, url_text: str) -> None:
    url = parse_url(url_text)
    if in_memory(url):
        raise StorageError(
            f"{db}: an in-memory database keeps nothing once hpsearch exits: "
            "give a file (e.g. --db results.db) or a server URL"
        )
    if url.get_backend_name() != "sqlite":
        return
    path = Path(url.database or "")
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
        raise StorageError(
            f"{describe(db)}: not a usable database URL ({masked(str(exc))})"
        ) from None


def open_engine(db: str) -> Engine:
    """Open (creating if new) a writable hpsearch database and check its schema version."""
    url_text = to_url(db)
    name = masked(db)
    _check_sqlite_path(name, url_text)
    engine = new_engine(db, url_text)
    try:
        # An existing database is checked before anything (a pragma too) is written to it.
        new = _needs_schema(engine, name)
        if engine.dialect.name == "sqlite":
            engine.dispose()
            event.listen(engine, "connect", sqlite_pragmas)
        if new:
            from storage._migrate import create_schema  # Alembic only for a new database

            create_schema(url_text, name)
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
    """The database's own message, on one line, without passwords."""
    orig = driver_error(exc)
    message = str(orig) if orig is not exc else str(exc).splitlines()[0]
    return masked(" ".join(message.split()))


def _needs_schema(engine: Engine, db: str) -> bool:
    """True for a new, empty database; an hpsearch database must have this hpsearch's version."""
    with engine.connect() as conn:
        version = stored_version(conn, db)
        if version is None and inspect(conn).get_table_names():
            raise StorageError(
                f"{db}: not an hpsearch database (it has tables but no {Meta.__tablename__}): "
                "pick another --db"
            )
    if version is None:
        return True
    check_writable(version, db, sqlite=engine.dialect.name == "sqlite")
    return False


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
