"""Which schema a database has, read with one query, and whether this hpsearch may use it.

The source of truth is `hpsearch_meta.schema_version` = N: every hpsearch reads it, and Alembic
revision "000N" (storage/migrations/versions/) sets it in the same transaction in which it
changes the tables and Alembic's own `alembic_version`. A database of hpsearch 0.1 has no
`alembic_version` table and schema version 1: it is revision "0001". Nothing here imports
Alembic (it costs start-up time); only creating or upgrading a database does (`_migrate`).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from sqlalchemy import Connection, inspect, select
from sqlalchemy.exc import DBAPIError

from storage._errors import SchemaVersionError, StorageError
from storage._models import SCHEMA_VERSION, Meta, table

HEAD = SCHEMA_VERSION  # the version this hpsearch writes
FIRST = 1  # the oldest version there is (hpsearch 0.1)
_meta = table(Meta)
_VERSION = select(_meta.c.value).where(_meta.c.key == "schema_version")  # MySQL: `key` quoted


def revision_id(version: int) -> str:
    """The Alembic revision id of a schema version: 2 -> "0002"."""
    return f"{version:04d}"


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
    return _parsed(found, db)


def version_in_transaction(conn: Connection, db: str) -> int | None:
    """`stored_version` for a connection inside a transaction: looks before it reads."""
    if not inspect(conn).has_table(Meta.__tablename__):
        return None
    return _parsed(conn.execute(_VERSION).scalar(), db)


def _parsed(found: object, db: str) -> int:
    if not isinstance(found, str) or not found.strip().isdigit():
        raise StorageError(
            f"{db}: unreadable schema version {found!r} in {Meta.__tablename__}: "
            "not written by hpsearch, or damaged: pick another --db"
        )
    return int(found)


def check_readable(version: int, db: str) -> None:
    """Reading commands read every version up to this hpsearch's."""
    if version > HEAD:
        raise SchemaVersionError(
            f"{db}: schema version {version} is newer than this hpsearch reads "
            f"({HEAD}): upgrade with `pip install -U hpsearch`"
        )


def check_writable(version: int, db: str, *, sqlite: bool) -> None:
    """Writing commands need exactly this hpsearch's version."""
    check_readable(version, db)
    if version < HEAD:
        raise SchemaVersionError(
            f"{db}: schema version {version} is older than this hpsearch ({HEAD}): "
            f"run `{upgrade_command(db)}` ({_backup_note(db, sqlite=sqlite)})"
        )


def upgrade_command(db: str) -> str:
    """The command that upgrades `db` (a URL's password shown as ***)."""
    from storage._engine import describe  # _engine imports this module

    return f"hpsearch db upgrade --db {shlex.quote(describe(db))}"


def backup_name(path: str) -> str:
    """Where `hpsearch db upgrade` keeps the old SQLite file: NAME.bak next to it."""
    return f"{path}.bak"


def _backup_note(db: str, *, sqlite: bool) -> str:
    if sqlite:
        return f"a copy is kept as {Path(backup_name(db)).name}"
    return "back the database up first: it is changed in place"
