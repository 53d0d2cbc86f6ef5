"""Read-only access to a server database (PostgreSQL, MySQL) through SQLAlchemy.

A read-only transaction, rolled back. PostgreSQL: the session starts with
`default_transaction_read_only=on` and the reads run in a read-only transaction, but that alone
lets through several statements at once (`SELECT 1; COMMIT; DROP TABLE x` drops x), statements
that end the transaction or change the session, and functions with side effects
(`pg_terminate_backend`, `lo_import`, `pg_reload_conf`, `set_config`, dynamic SQL through
`query_to_xml`). So user SQL must be one statement (sent as a prepared statement, which
PostgreSQL refuses to split), must start with a reading keyword, and must not name any volatile
function of the server (looked up in `pg_proc`) other than a few harmless ones. The real
boundary is a read-only role (README, PostgreSQL).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from storage._engine import (
    describe,
    driver_error,
    new_engine,
    parse_url,
    reason,
    stored_version,
    to_url,
)
from storage._errors import StorageError
from storage._readonly import (
    FETCH_ROWS,
    QueryRows,
    Reader,
    _refused,
    _Stop,
    leading_keyword,
    message_error,
)
from storage._records import QueryResult
from storage._schema import HEAD, META_TABLE, check_readable

# How PostgreSQL and MySQL say that `_server_timeout` stopped a statement.
_SERVER_TIMEOUTS = ("statement timeout", "maximum statement execution time exceeded")
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


class ServerReader(Reader):
    """A server database through SQLAlchemy, in a read-only transaction."""

    def __init__(self, conn: Connection, db: str, *, schema_version: int = HEAD) -> None:
        super().__init__(db, schema_version=schema_version)
        self.conn = conn
        self.dialect = conn.dialect.name
        self._volatile: set[str] | None = None

    def interrupt(self) -> None:
        """psycopg's `cancel()` asks the server to cancel the statement; a driver without
        `cancel()` gets the KeyboardInterrupt raised here."""
        super().interrupt()
        cancel = getattr(self.conn.connection.driver_connection, "cancel", None)
        if cancel is None:
            raise KeyboardInterrupt
        cancel()

    def has_table(self, name: str) -> bool:
        from sqlalchemy import inspect

        return inspect(self.conn).has_table(name)

    def stream(self, sql: str, *, timeout: float | None = None) -> QueryRows:
        self._arm(sql)
        self._stop = _Stop(timeout)
        try:
            self._server_timeout(timeout)
            if self.dialect == "postgresql":
                cursor: Any = self._postgres_cursor(sql)
                columns = [d.name for d in cursor.description or ()]
            else:
                options = {"no_parameters": True, "stream_results": True}
                cursor = self.conn.execution_options(**options).exec_driver_sql(sql)
                columns = list(cursor.keys()) if cursor.returns_rows else []
        except StorageError:
            raise
        except Exception as exc:  # SQLAlchemy's, or the PostgreSQL driver's own error
            raise self._stopped_or(exc) from None
        return QueryRows(columns, self._chunks(cursor if columns else None))

    def _chunks(self, cursor: Any) -> Generator[tuple[Any, ...], None, None]:
        if cursor is None:
            return
        try:
            while rows := cursor.fetchmany(FETCH_ROWS):
                self._stop.check()
                yield from map(tuple, rows)
        except SQLAlchemyError as exc:
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
            if self.dialect == "postgresql" and params is None:
                return self._query_postgres(sql)
            if params is None:  # the user's SQL as is: a '%' is not a placeholder
                result = self.conn.execution_options(no_parameters=True).exec_driver_sql(sql)
            else:
                result = self.conn.execute(text(sql), dict(params))
            if not result.returns_rows:
                return QueryResult([], [])
            return QueryResult(list(result.keys()), [tuple(r) for r in result.fetchall()])
        except SQLAlchemyError as exc:
            raise self._error(exc) from None

    def chunks(
        self, sql: str, params: Mapping[str, Any], size: int = 100_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        try:
            result = self.conn.execution_options(stream_results=True).execute(
                text(sql), dict(params)
            )
            for part in result.partitions(size):
                yield [tuple(r) for r in part]
        except SQLAlchemyError as exc:
            raise self._error(exc) from None

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

    def _error(self, exc: BaseException) -> StorageError:
        message = " ".join(str(driver_error(exc)).split())
        if (found := _PG_READ_ONLY_ERROR.search(message)) is not None:
            what = found.group(1)  # a write inside WITH is reported as "SELECT"
            return _refused("a write inside WITH" if what == "SELECT" else what)
        if "cannot insert multiple commands into a prepared statement" in message:
            return _refused("more than one statement")
        return message_error(message, self._keyword)


def _plain_values(cursor: Any) -> None:
    """JSON as its text (as SQLite gives it) and NUMERIC as float, for CSV and JSON output."""
    from psycopg.types.numeric import FloatLoader
    from psycopg.types.string import TextLoader

    for name in ("json", "jsonb"):
        cursor.adapters.register_loader(name, TextLoader)
    cursor.adapters.register_loader("numeric", FloatLoader)


def _check_hpsearch(conn: Connection, db: str) -> int:
    """The schema version of an hpsearch database this hpsearch can read (older ones too)."""
    try:
        version = stored_version(conn, db)
    except SQLAlchemyError as exc:
        raise StorageError(f"{db}: cannot read database: {reason(exc)}") from None
    if version is None:
        raise StorageError(
            f"{db}: not an hpsearch database (no {META_TABLE} table): pick another --db"
        )
    check_readable(version, db)
    return version


@contextmanager
def read_only_server(db: str) -> Iterator[ServerReader]:
    """A read-only connection to an existing hpsearch database on a server."""
    url_text = to_url(db)
    name = describe(db)
    url = parse_url(db)
    engine = new_engine(db, url_text, poolclass=NullPool, connect_args=_read_only_connect_args(url))
    try:
        with engine.connect() as conn:
            version = _check_hpsearch(conn, name)
            _begin_read_only(conn)
            try:
                yield ServerReader(conn, name, schema_version=version)
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
    """The rest of this connection's work runs in a read-only transaction."""
    dialect = conn.dialect.name
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
