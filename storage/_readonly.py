"""Read-only access: `hpsearch sql` and the loaders never change the database.

SQLite: a `mode=ro` URI, `PRAGMA query_only`, and an authorizer that refuses every write,
ATTACH (which would create a file), VACUUM and writing PRAGMAs with a clear reason (a
`mode=ro` connection alone lets ATTACH create files and turns `PRAGMA journal_mode=DELETE`
into a misleading "disk I/O error"). Server databases: a read-only transaction, rolled back.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from storage._engine import (
    BUSY_TIMEOUT_MS,
    check_version,
    describe,
    driver_error,
    reason,
    to_url,
)
from storage._errors import StorageError
from storage._models import Meta

NEVER_CHANGES = "(hpsearch sql never changes the database)"

_DENIED = {
    sqlite3.SQLITE_INSERT: "INSERT",
    sqlite3.SQLITE_UPDATE: "UPDATE",
    sqlite3.SQLITE_DELETE: "DELETE",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE",
    sqlite3.SQLITE_ATTACH: "ATTACH",
    sqlite3.SQLITE_DETACH: "DETACH",
    sqlite3.SQLITE_REINDEX: "REINDEX",
    sqlite3.SQLITE_ANALYZE: "ANALYZE",
}
_CREATE_DROP = {
    name: verb
    for verb in ("CREATE", "DROP")
    for name in (
        getattr(sqlite3, attr) for attr in dir(sqlite3) if attr.startswith(f"SQLITE_{verb}_")
    )
}
# PRAGMAs that take an argument but only read.
_READING_PRAGMAS = {
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
}
# PRAGMAs that write without an argument.
_WRITING_PRAGMAS = {"wal_checkpoint", "optimize", "incremental_vacuum", "shrink_memory"}
_SCHEMA_TABLES = {"sqlite_master", "sqlite_temp_master", "sqlite_schema"}
_COMMENT = re.compile(r"\s*(--[^\n]*(\n|$)|/\*.*?\*/)", re.S)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def leading_keyword(sql: str) -> str:
    """The statement's first keyword (after comments), upper case: 'SELECT', 'VACUUM', ..."""
    rest = sql
    while (m := _COMMENT.match(rest)) is not None:
        rest = rest[m.end() :]
    word = re.match(r"\s*([A-Za-z]+)", rest)
    return word.group(1).upper() if word else ""


class _Guard:
    """The SQLite authorizer; remembers why it refused so the error can say so."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.keyword = ""

    def __call__(self, action: int, arg1: Any, arg2: Any, _db: Any, _trigger: Any) -> int:
        refused = self._refused(action, arg1, arg2)
        if refused is None:
            return sqlite3.SQLITE_OK
        self.reason = self.reason or refused  # the first refusal names the statement
        return sqlite3.SQLITE_DENY

    def _refused(self, action: int, arg1: Any, arg2: Any) -> str | None:
        if action == sqlite3.SQLITE_ATTACH and self.keyword == "VACUUM":
            return "VACUUM"
        if arg1 in _SCHEMA_TABLES:
            if action == sqlite3.SQLITE_UPDATE:
                return None  # asked while reading the schema; SQLite never lets SQL write it
            if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_DELETE):
                return "CREATE" if action == sqlite3.SQLITE_INSERT else "DROP"
        if action in _DENIED:
            return _DENIED[action]
        if action in _CREATE_DROP:
            return _CREATE_DROP[action]
        if action == sqlite3.SQLITE_PRAGMA:
            name = str(arg1).lower()
            if name in _WRITING_PRAGMAS or (arg2 is not None and name not in _READING_PRAGMAS):
                return f"PRAGMA {arg1}" + (f"={arg2}" if arg2 is not None else "")
        return None


class Reader:
    """One read-only connection; `query` runs a single statement and returns all its rows."""

    def __init__(self, conn: Connection, db: str, guard: _Guard | None) -> None:
        self.conn = conn
        self.db = db
        self._guard = guard

    @property
    def dialect(self) -> str:
        return self.conn.dialect.name

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        if self._guard is not None:
            self._guard.keyword = leading_keyword(sql)
            self._guard.reason = None
        try:
            if self.dialect == "sqlite":
                return self._query_sqlite(sql, params)
            if params is None:  # the user's SQL as is: a '%' is not a placeholder
                result = self.conn.execution_options(no_parameters=True).exec_driver_sql(sql)
            else:
                result = self.conn.execute(text(sql), dict(params))
            if not result.returns_rows:
                return QueryResult([], [])
            return QueryResult(list(result.keys()), [tuple(r) for r in result.fetchall()])
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise self._error(exc) from None

    def chunks(
        self, sql: str, params: Mapping[str, Any], size: int = 100_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of one query in lists of at most `size`, fetched as they are consumed."""
        try:
            if self.dialect == "sqlite":
                raw = self.conn.connection.driver_connection
                cursor = raw.cursor()  # type: ignore[union-attr]
                try:
                    cursor.execute(sql, dict(params))
                    while rows := cursor.fetchmany(size):
                        yield rows
                finally:
                    cursor.close()
                return
            result = self.conn.execution_options(stream_results=True).execute(
                text(sql), dict(params)
            )
            for part in result.partitions(size):
                yield [tuple(r) for r in part]
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise self._error(exc) from None

    def _query_sqlite(self, sql: str, params: Mapping[str, Any] | None) -> QueryResult:
        """The sqlite3 cursor directly: no per-row objects, ~4x faster on a million rows."""
        raw = self.conn.connection.driver_connection
        cursor = raw.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, dict(params or {}))
            if cursor.description is None:
                return QueryResult([], [])
            return QueryResult([d[0] for d in cursor.description], cursor.fetchall())
        finally:
            cursor.close()

    def _error(self, exc: Exception) -> StorageError:
        if self._guard is not None and self._guard.reason is not None:
            return StorageError(
                f"sql: read-only: {self._guard.reason} is not allowed {NEVER_CHANGES}"
            )
        orig = driver_error(exc)
        message = " ".join(str(orig).split())
        if isinstance(orig, sqlite3.Error) and "readonly" in message:
            return StorageError(f"sql: read-only: {message} {NEVER_CHANGES}")
        return StorageError(f"sql: {message}")


def _sqlite_path(db: str, database: str | None) -> Path:
    if not database or database == ":memory:":
        raise StorageError(f"{db}: an in-memory database has no results to read: pick --db")
    path = Path(database)
    if not path.is_file():
        raise StorageError(
            f"{db}: no database file at {path}: run `hpsearch coarse SPEC --db {db}` first "
            "or point --db at an existing one"
        )
    return path


def _connect_sqlite(path: Path, guard: _Guard) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = ON")
    conn.set_authorizer(guard)
    return conn


def _check_hpsearch(conn: Connection, db: str) -> None:
    try:
        tables = set(inspect(conn).get_table_names())
    except SQLAlchemyError as exc:
        raise StorageError(f"{db}: cannot read database: {reason(exc)}") from None
    if Meta.__tablename__ not in tables:
        raise StorageError(
            f"{db}: not an hpsearch database (no {Meta.__tablename__} table): pick another --db"
        )
    check_version(conn.engine, db)


@contextmanager
def read_only(db: str) -> Iterator[Reader]:
    """A read-only connection to an existing hpsearch database (never creates one)."""
    url_text = to_url(db)
    name = describe(db)
    try:
        url = make_url(url_text)
    except ArgumentError as exc:
        raise StorageError(f"{db}: not a usable database URL ({exc})") from None
    guard: _Guard | None = None
    if url.get_backend_name() == "sqlite":
        path = _sqlite_path(db, url.database)
        sqlite_guard = guard = _Guard()
        engine = create_engine(
            "sqlite://", creator=lambda: _connect_sqlite(path, sqlite_guard), poolclass=NullPool
        )
    else:
        try:
            engine = create_engine(url_text, poolclass=NullPool)
        except (ArgumentError, ImportError) as exc:
            raise StorageError(f"{db}: not a usable database URL ({exc})") from None
    try:
        with engine.connect() as conn:
            _check_hpsearch(conn, name)
            _begin_read_only(conn)
            try:
                yield Reader(conn, name, guard)
            finally:
                conn.rollback()
    except SQLAlchemyError as exc:
        raise StorageError(f"{name}: cannot read database: {reason(exc)}") from None
    finally:
        engine.dispose()


def _begin_read_only(conn: Connection) -> None:
    """Server databases: the rest of this connection's work runs in a read-only transaction."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return
    conn.rollback()
    if dialect == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    elif dialect in ("mysql", "mariadb"):
        conn.exec_driver_sql("START TRANSACTION READ ONLY")
    else:
        raise StorageError(
            f"{conn.engine.url.render_as_string(hide_password=True)}: read-only access is "
            f"supported for sqlite, postgresql and mysql, not {dialect}"
        )


def run_sql(db: str, sql: str) -> QueryResult:
    """Run one statement through a read-only connection; writes fail with a clear reason."""
    if not sql.strip():
        raise StorageError("sql: the query is empty")
    with read_only(db) as reader:
        return reader.query(sql)
