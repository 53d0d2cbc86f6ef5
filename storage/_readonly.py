"""Read-only access: `hpsearch sql` and the loaders never change the database.

SQLite: a `mode=ro` URI, `PRAGMA query_only`, and an authorizer that refuses every write,
ATTACH (which would create a file), VACUUM and writing PRAGMAs with a clear reason (a
`mode=ro` connection alone lets ATTACH create files and turns `PRAGMA journal_mode=DELETE`
into a misleading "disk I/O error"). Server databases: a read-only transaction, rolled back.

PostgreSQL: the session starts with `default_transaction_read_only=on` and the reads run in a
read-only transaction, but that alone lets through several statements at once (`SELECT 1;
COMMIT; DROP TABLE x` drops x), statements that end the transaction or change the session, and
functions with side effects (`pg_terminate_backend`, `lo_import`, `pg_reload_conf`,
`set_config`, dynamic SQL through `query_to_xml`). So user SQL must be one statement (sent as a
prepared statement, which PostgreSQL refuses to split), must start with a reading keyword, and
must not name any volatile function of the server (looked up in `pg_proc`) other than a few
harmless ones. The real boundary is a read-only role (README, PostgreSQL).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from storage._engine import (
    BUSY_TIMEOUT_MS,
    describe,
    driver_error,
    new_engine,
    parse_url,
    reason,
    to_url,
)
from storage._errors import NotFoundError, QueryTimeout, StorageError, masked
from storage._models import Meta
from storage._records import QueryResult
from storage._schema import HEAD, check_readable, stored_version

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
class QueryRows:
    """A running query: its columns, and its rows fetched in chunks as they are consumed."""

    columns: list[str]
    rows: Generator[tuple[Any, ...], None, None]  # close it when done early: it holds a cursor


# How PostgreSQL and MySQL say that `_server_timeout` stopped a statement.
_SERVER_TIMEOUTS = ("statement timeout", "maximum statement execution time exceeded")
FETCH_ROWS = 1000  # rows per fetch: memory stays bounded however many rows a query returns
PROGRESS_STEPS = 10_000  # SQLite VM steps between two checks for a stop (deadline or Ctrl-C)


class _Stop:
    """Why a running query should stop: a deadline, or `interrupt()` (e.g. from Ctrl-C)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._deadline = time.monotonic() + timeout if timeout else None
        self.interrupted = False

    @property
    def expired(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    def __call__(self) -> int:
        """SQLite's progress handler: non-zero aborts the running statement."""
        return int(self.interrupted or self.expired)

    def check(self, server_timed_out: bool = False) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        if self.expired or (server_timed_out and self.timeout):
            raise QueryTimeout(
                f"sql: the query ran longer than --timeout {self.timeout:g} s and was stopped: "
                "narrow it (a LIMIT, a WHERE) or raise --timeout (0: no limit)"
            )


def without_leading_comments(sql: str) -> str:
    rest = sql
    while (m := _COMMENT.match(rest)) is not None:
        rest = rest[m.end() :]
    return rest


def leading_keyword(sql: str) -> str:
    """The statement's first keyword (after comments), upper case: 'SELECT', 'VACUUM', ..."""
    word = re.match(r"\s*([A-Za-z]+)", without_leading_comments(sql))
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


# Statements that only read on PostgreSQL; anything else is refused before it is sent.
_PG_READING = {"SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN", ""}
# Volatile functions without side effects beyond the session's random state.
_PG_HARMLESS_VOLATILE = {
    "random", "setseed", "clock_timestamp", "timeofday", "gen_random_uuid", "currval", "lastval",
    "current_query", "txid_status", "system", "bernoulli",
}  # fmt: skip
_PG_VOLATILE_SQL = "SELECT DISTINCT lower(proname) FROM pg_proc WHERE provolatile = 'v'"
_PG_READ_ONLY_ERROR = re.compile(r"cannot execute (.+?) in a read-only transaction")
_WORD = re.compile(r"[a-z_][a-z0-9_$]*")
# How SQLite and PostgreSQL refuse a write to a view (such as `metrics`), before any guard.
_VIEW_WRITE = re.compile(
    r"cannot modify \S+ because it is a view|use DROP VIEW to delete view"
    r"|cannot (delete|insert|update)( from| into)? view"
)


def _view_write(found: re.Match[str], keyword: str) -> str:
    """What the refused write was: PostgreSQL names it, SQLite leaves it to the keyword."""
    if keyword == "WITH":
        return "a write inside WITH"
    return found.group(1).upper() if found.group(1) else keyword


class Reader:
    """One read-only connection; `query` runs a single statement and returns all its rows,
    `stream` runs one with a time limit and hands its rows out in chunks.

    `schema_version` may be older than this hpsearch's (reading commands read old databases):
    a query of a newer table checks it first (e.g. `attempts` exists from version 2 on).
    """

    def __init__(
        self, conn: Connection, db: str, guard: _Guard | None, *, schema_version: int = HEAD
    ) -> None:
        self.conn = conn
        self.db = db
        self._guard = guard
        self.schema_version = schema_version
        self._stop = _Stop(None)
        self._volatile: set[str] | None = None
        self._keyword = ""  # the leading keyword of the statement running

    @property
    def dialect(self) -> str:
        return self.conn.dialect.name

    def interrupt(self) -> None:
        """Stop the running `stream` query, which then raises KeyboardInterrupt (call it from a
        SIGINT handler).

        SQLite's progress handler sees the flag between VM steps; psycopg's `cancel()` asks
        the server to cancel the statement. A driver without `cancel()` gets the
        KeyboardInterrupt raised here.
        """
        self._stop.interrupted = True
        if self.dialect == "sqlite":
            return
        cancel = getattr(self.conn.connection.driver_connection, "cancel", None)
        if cancel is None:
            raise KeyboardInterrupt
        cancel()

    def _arm(self, sql: str) -> None:
        self._keyword = leading_keyword(sql)
        if self._guard is not None:
            self._guard.keyword = self._keyword
            self._guard.reason = None

    def stream(self, sql: str, *, timeout: float | None = None) -> QueryRows:
        """Run the user's statement; rows arrive as the iterator is consumed.

        Past `timeout` seconds (from the start to the last row) the query stops with a
        StorageError; after `interrupt()` with KeyboardInterrupt.
        """
        self._arm(sql)
        self._stop = stop = _Stop(timeout)
        try:
            if self.dialect == "sqlite":
                raw = self.conn.connection.driver_connection
                raw.set_progress_handler(stop, PROGRESS_STEPS)  # type: ignore[union-attr]
                cursor: Any = raw.cursor()  # type: ignore[union-attr]
                cursor.execute(sql)
                columns = [d[0] for d in cursor.description or ()]
                if not columns:
                    cursor.close()
            elif self.dialect == "postgresql":
                self._server_timeout(timeout)
                cursor = self._postgres_cursor(sql)
                columns = [d.name for d in cursor.description or ()]
            else:
                self._server_timeout(timeout)
                options = {"no_parameters": True, "stream_results": True}
                cursor = self.conn.execution_options(**options).exec_driver_sql(sql)
                columns = list(cursor.keys()) if cursor.returns_rows else []
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise self._stopped_or(exc) from None
        except StorageError:
            raise
        except Exception as exc:  # the PostgreSQL driver's own error
            raise self._stopped_or(exc) from None
        return QueryRows(columns, self._chunks(cursor if columns else None))

    def _chunks(self, cursor: Any) -> Generator[tuple[Any, ...], None, None]:
        if cursor is None:
            return
        try:
            while rows := cursor.fetchmany(FETCH_ROWS):
                self._stop.check()
                yield from rows if self.dialect == "sqlite" else map(tuple, rows)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise self._stopped_or(exc) from None
        finally:
            cursor.close()
        self._stop.check()  # Ctrl-C after the last chunk still counts

    def _stopped_or(self, exc: Exception) -> StorageError:
        """Raise why the query was stopped, if it was; else the database's error to raise."""
        self._stop.check(server_timed_out=any(t in str(exc) for t in _SERVER_TIMEOUTS))
        return self._error(exc)

    def _server_timeout(self, timeout: float | None) -> None:
        if not timeout:
            return
        ms = max(1, round(timeout * 1000))
        if self.dialect == "postgresql":
            self.conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
        elif self.dialect in ("mysql", "mariadb"):
            self.conn.exec_driver_sql(f"SET SESSION max_execution_time = {ms}")

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        self._arm(sql)
        try:
            if self.dialect == "sqlite":
                return self._query_sqlite(sql, params)
            if self.dialect == "postgresql" and params is None:
                return self._query_postgres(sql)
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

    def _query_postgres(self, sql: str) -> QueryResult:
        try:
            cursor = self._postgres_cursor(sql)
        except self.conn.dialect.loaded_dbapi.Error as exc:
            raise self._error(exc) from None
        try:
            if cursor.description is None:
                return QueryResult([], [])
            return QueryResult([d.name for d in cursor.description], cursor.fetchall())
        finally:
            cursor.close()

    def _postgres_cursor(self, sql: str) -> Any:
        """The user's SQL: checked, then sent as one prepared statement (never split)."""
        self._refuse_writing_postgres(sql)
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        _plain_values(cursor)
        try:
            cursor.execute(sql, prepare=True)
        except Exception:
            cursor.close()
            raise
        return cursor

    def _refuse_writing_postgres(self, sql: str) -> None:
        keyword = leading_keyword(sql)
        if keyword not in _PG_READING:
            raise _refused(keyword)
        if re.search(r"u&[\"']", sql, re.I):  # escaped names would hide a function's name
            raise _refused("a U& (Unicode-escaped) name or string")
        if self._volatile is None:
            rows = self.conn.exec_driver_sql(_PG_VOLATILE_SQL).fetchall()
            self._volatile = {name for (name,) in rows} - _PG_HARMLESS_VOLATILE
        named = [w for w in _WORD.findall(sql.lower()) if w in self._volatile]
        if named:
            raise _refused(f"function {named[0]}")

    def _error(self, exc: Exception) -> StorageError:
        if self._guard is not None and self._guard.reason is not None:
            return StorageError(
                f"sql: read-only: {self._guard.reason} is not allowed {NEVER_CHANGES}"
            )
        orig = driver_error(exc)
        message = " ".join(str(orig).split())
        if (found := _VIEW_WRITE.search(message)) is not None:  # `metrics` is a view
            return _refused(_view_write(found, self._keyword))
        if isinstance(orig, sqlite3.Error) and "readonly" in message:
            return StorageError(f"sql: read-only: {message} {NEVER_CHANGES}")
        if (found := _PG_READ_ONLY_ERROR.search(message)) is not None:
            what = found.group(1)  # a write inside WITH is reported as "SELECT"
            return _refused("a write inside WITH" if what == "SELECT" else what)
        if "cannot insert multiple commands into a prepared statement" in message:
            return _refused("more than one statement")
        return StorageError(f"sql: {message}")


def _plain_values(cursor: Any) -> None:
    """JSON as its text (as SQLite gives it) and NUMERIC as float, for CSV and JSON output."""
    from psycopg.types.numeric import FloatLoader
    from psycopg.types.string import TextLoader

    for name in ("json", "jsonb"):
        cursor.adapters.register_loader(name, TextLoader)
    cursor.adapters.register_loader("numeric", FloatLoader)


def _refused(what: str) -> StorageError:
    return StorageError(f"sql: read-only: {what} is not allowed {NEVER_CHANGES}")


def _sqlite_path(db: str, database: str | None) -> Path:
    if not database or database == ":memory:":
        raise StorageError(f"{db}: an in-memory database has no results to read: pick --db")
    path = Path(database)
    if not path.is_file():
        raise NotFoundError(
            f"{db}: no database at {path}: run `hpsearch coarse SPEC --db {db}` first "
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


def _check_hpsearch(conn: Connection, db: str) -> int:
    """The schema version of an hpsearch database this hpsearch can read (older ones too)."""
    try:
        version = stored_version(conn, db)
    except SQLAlchemyError as exc:
        raise StorageError(f"{db}: cannot read database: {reason(exc)}") from None
    if version is None:
        raise StorageError(
            f"{db}: not an hpsearch database (no {Meta.__tablename__} table): pick another --db"
        )
    check_readable(version, db)
    return version


@contextmanager
def read_only(db: str) -> Iterator[Reader]:
    """A read-only connection to an existing hpsearch database (never creates one)."""
    url_text = to_url(db)
    name = describe(db)
    url = parse_url(db)
    guard: _Guard | None = None
    if url.get_backend_name() == "sqlite":
        path = _sqlite_path(masked(db), url.database)
        sqlite_guard = guard = _Guard()
        engine = create_engine(
            "sqlite://", creator=lambda: _connect_sqlite(path, sqlite_guard), poolclass=NullPool
        )
    else:
        engine = new_engine(
            db, url_text, poolclass=NullPool, connect_args=_read_only_connect_args(url)
        )
    try:
        with engine.connect() as conn:
            version = _check_hpsearch(conn, name)
            _begin_read_only(conn)
            try:
                yield Reader(conn, name, guard, schema_version=version)
            finally:
                conn.rollback()
    except SQLAlchemyError as exc:
        raise StorageError(f"{name}: cannot read database: {reason(exc)}") from None
    finally:
        engine.dispose()


def _read_only_connect_args(url: URL) -> dict[str, Any]:
    """PostgreSQL: every transaction of the session read-only, even after a COMMIT."""
    if url.get_backend_name() == "postgresql":
        return {"options": "-c default_transaction_read_only=on"}
    return {}


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
    check_query(sql)
    with read_only(db) as reader:
        return reader.query(sql)


def check_query(sql: str) -> None:
    if not sql.strip():
        raise StorageError("sql: the query is empty")
    if not without_leading_comments(sql).strip():
        raise StorageError("sql: the query is only a comment: no statement to run")
