"""Read-only access: `hpsearch sql` and the loaders never change the database.

SQLite files are read through the standard library's sqlite3 alone (no SQLAlchemy: `hpsearch
sql` starts in a fraction of a second): a `mode=ro` URI, `PRAGMA query_only`, and an authorizer
that refuses every write, ATTACH (which would create a file), VACUUM and writing PRAGMAs with a
clear reason (a `mode=ro` connection alone lets ATTACH create files and turns `PRAGMA
journal_mode=DELETE` into a misleading "disk I/O error"). Server databases go through
SQLAlchemy in a read-only transaction, rolled back (`storage/_readonly_server.py`, which also
says what is refused on PostgreSQL).

Both readers have the same methods: `query` (one statement, all rows), `chunks` (rows in lists,
as consumed), `stream` (the user's statement with a time limit, rows as consumed) and
`interrupt` (Ctrl-C).
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

from storage._errors import NotFoundError, QueryTimeout, StorageError, masked
from storage._records import QueryResult
from storage._schema import HEAD, META_TABLE, VERSION_SQL, check_readable, parsed_version
from storage._terms import BUSY_TIMEOUT_MS

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
# How SQLite and PostgreSQL refuse a write to a view (such as `metrics`), before any guard.
_VIEW_WRITE = re.compile(
    r"cannot modify \S+ because it is a view|use DROP VIEW to delete view"
    r"|cannot (delete|insert|update)( from| into)? view"
)


@dataclass(frozen=True)
class QueryRows:
    """A running query: its columns, and its rows fetched in chunks as they are consumed."""

    columns: list[str]
    rows: Generator[tuple[Any, ...], None, None]  # close it when done early: it holds a cursor


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


class Reader:
    """One read-only connection; `query` runs a single statement and returns all its rows,
    `stream` runs one with a time limit and hands its rows out in chunks, `chunks` hands out
    the rows of a query of hpsearch's own in lists.

    `schema_version` may be older than this hpsearch's (reading commands read old databases):
    a query of a newer table checks it first (e.g. `attempts` exists from version 2 on).
    `SqliteReader` reads an SQLite file, `_readonly_server.ServerReader` a server database.
    """

    dialect = ""

    def __init__(self, db: str, *, schema_version: int = HEAD) -> None:
        self.db = db
        self.schema_version = schema_version
        self._stop = _Stop(None)
        self._keyword = ""  # the leading keyword of the statement running

    def interrupt(self) -> None:
        """Stop the running `stream` query, which then raises KeyboardInterrupt (call it from a
        SIGINT handler)."""
        self._stop.interrupted = True

    def _arm(self, sql: str) -> None:
        self._keyword = leading_keyword(sql)

    def has_table(self, name: str) -> bool:
        raise NotImplementedError

    def stream(self, sql: str, *, timeout: float | None = None) -> QueryRows:
        """Run the user's statement; rows arrive as the iterator is consumed.

        Past `timeout` seconds (from the start to the last row) the query stops with a
        StorageError; after `interrupt()` with KeyboardInterrupt.
        """
        raise NotImplementedError

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        raise NotImplementedError

    def chunks(
        self, sql: str, params: Mapping[str, Any], size: int = 100_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of one query in lists of at most `size`, fetched as they are consumed."""
        raise NotImplementedError


class SqliteReader(Reader):
    """An SQLite file through sqlite3: the progress handler sees `interrupt()` and the
    deadline between VM steps."""

    dialect = "sqlite"

    def __init__(
        self, conn: sqlite3.Connection, db: str, guard: _Guard, *, schema_version: int = HEAD
    ) -> None:
        super().__init__(db, schema_version=schema_version)
        self.raw = conn
        self._guard = guard

    def _arm(self, sql: str) -> None:
        super()._arm(sql)
        self._guard.keyword = self._keyword
        self._guard.reason = None

    def has_table(self, name: str) -> bool:
        found = self.query(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name",
            {"name": name},
        )
        return bool(found.rows[0][0])

    def stream(self, sql: str, *, timeout: float | None = None) -> QueryRows:
        self._arm(sql)
        self._stop = stop = _Stop(timeout)
        try:
            self.raw.set_progress_handler(stop, PROGRESS_STEPS)
            cursor = self.raw.cursor()
            cursor.execute(sql)
            columns = [d[0] for d in cursor.description or ()]
        except sqlite3.Error as exc:
            raise self._stopped_or(exc) from None
        if not columns:
            cursor.close()
        return QueryRows(columns, self._chunks(cursor if columns else None))

    def _chunks(self, cursor: Any) -> Generator[tuple[Any, ...], None, None]:
        if cursor is None:
            return
        try:
            while rows := cursor.fetchmany(FETCH_ROWS):
                self._stop.check()
                yield from rows
        except sqlite3.Error as exc:
            raise self._stopped_or(exc) from None
        finally:
            cursor.close()
        self._stop.check()  # Ctrl-C after the last chunk still counts

    def _stopped_or(self, exc: BaseException) -> StorageError:
        """Raise why the query was stopped, if it was; else the database's error to raise."""
        self._stop.check()
        return self._error(exc)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """The sqlite3 cursor directly: no per-row objects, ~4x faster on a million rows."""
        self._arm(sql)
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql, dict(params or {}))
            if cursor.description is None:
                return QueryResult([], [])
            return QueryResult([d[0] for d in cursor.description], cursor.fetchall())
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            cursor.close()

    def chunks(
        self, sql: str, params: Mapping[str, Any], size: int = 100_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql, dict(params))
            while rows := cursor.fetchmany(size):
                yield rows
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            cursor.close()

    def _error(self, exc: BaseException) -> StorageError:
        if self._guard.reason is not None:
            return _refused(self._guard.reason)
        message = " ".join(str(exc).split())
        if "readonly" in message:
            return StorageError(f"sql: read-only: {message} {NEVER_CHANGES}")
        return message_error(message, self._keyword)


def message_error(message: str, keyword: str) -> StorageError:
    """The database's own message as a StorageError; a write to a view (`metrics`), which the
    database refuses before any guard sees it, as the read-only refusal it is."""
    if (found := _VIEW_WRITE.search(message)) is not None:
        if keyword == "WITH":
            return _refused("a write inside WITH")
        return _refused(found.group(1).upper() if found.group(1) else keyword)
    return StorageError(f"sql: {message}")


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


def _check_hpsearch(conn: sqlite3.Connection, db: str) -> int:
    """The schema version of an hpsearch database this hpsearch can read (older ones too)."""
    try:
        found = conn.execute(VERSION_SQL).fetchone()
    except sqlite3.Error:
        listed = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (META_TABLE,)
        ).fetchone()
        if listed[0]:
            raise  # the table is there: the failure is the database's own, report it
        raise StorageError(
            f"{db}: not an hpsearch database (no {META_TABLE} table): pick another --db"
        ) from None
    version = parsed_version(found[0] if found else None, db)
    check_readable(version, db)
    return version


def sqlite_target(db: str) -> tuple[str, str | None] | None:
    """(the name for messages, the file) of an SQLite --db; None for a server database.

    A plain path is read here, without SQLAlchemy (as `_engine.to_url` reads it); a URL is
    parsed by SQLAlchemy.
    """
    if db == ":memory:":
        return ":memory:", None
    if "://" not in db:
        path = str(Path(db).expanduser().absolute())
        return path, path
    from storage._engine import parse_url  # SQLAlchemy: only for a URL

    url = parse_url(db)
    if url.get_backend_name() != "sqlite":
        return None
    return url.database or ":memory:", url.database


@contextmanager
def read_only(db: str) -> Iterator[Reader]:
    """A read-only connection to an existing hpsearch database (never creates one)."""
    target = sqlite_target(db)
    if target is None:
        from storage._readonly_server import read_only_server

        with read_only_server(db) as server:
            yield server
        return
    name, database = target
    path = _sqlite_path(masked(db), database)
    guard = _Guard()
    try:
        conn = _connect_sqlite(path, guard)
        try:
            yield SqliteReader(conn, name, guard, schema_version=_check_hpsearch(conn, name))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(f"{name}: cannot read database: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return masked(" ".join(str(exc).split()))


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
