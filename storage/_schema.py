"""Which schema a database has and whether this hpsearch may use it; no SQLAlchemy here.

The source of truth is `hpsearch_meta.schema_version` = N: every hpsearch reads it, and Alembic
revision "000N" (storage/migrations/versions/) sets it in the same transaction in which it
changes the tables and Alembic's own `alembic_version`. A database of hpsearch 0.1 has no
`alembic_version` table and schema version 1: it is revision "0001". The one query that reads
it is `VERSION_SQL` (run through SQLAlchemy by `_engine.stored_version`, through sqlite3 by the
read-only path); nothing here imports SQLAlchemy or Alembic (they cost start-up time).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from storage._errors import SchemaVersionError, StorageError

SCHEMA_VERSION = 8  # the newest revision's number: revision "0008"
HEAD = SCHEMA_VERSION  # the version this hpsearch writes
FIRST = 1  # the oldest version there is (hpsearch 0.1)
META_TABLE = "hpsearch_meta"
VERSION_SQL = f"SELECT value FROM {META_TABLE} WHERE key = 'schema_version'"  # not for MySQL


def revision_id(version: int) -> str:
    """The Alembic revision id of a schema version: 2 -> "0002"."""
    return f"{version:04d}"


def parsed_version(found: object, db: str) -> int:
    """The version stored in `hpsearch_meta`, which must be a number."""
    if not isinstance(found, str) or not found.strip().isdigit():
        raise StorageError(
            f"{db}: unreadable schema version {found!r} in {META_TABLE}: "
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
