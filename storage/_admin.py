"""Looking after a database's schema: what version it has, and upgrading it (`hpsearch db`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage._readonly import read_only
from storage._schema import HEAD, check_readable


@dataclass(frozen=True)
class SchemaStatus:
    """A database's schema version against this hpsearch's (`head`)."""

    db: str
    version: int
    revision: str | None  # Alembic's alembic_version; None before migrations (hpsearch 0.1)
    head: int = HEAD

    @property
    def current(self) -> bool:
        return self.version == self.head


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did: the versions before and after, and the SQLite copy it kept."""

    db: str
    before: int
    after: int
    backup: Path | None


def schema_status(db: str) -> SchemaStatus:
    """The schema version of an existing hpsearch database (read-only; creates nothing)."""
    with read_only(db) as reader:
        revision = None
        if reader.has_table("alembic_version"):
            rows = reader.query("SELECT version_num FROM alembic_version").rows
            revision = str(rows[0][0]) if rows else None
        return SchemaStatus(reader.db, reader.schema_version, revision)


def upgrade_schema(db: str) -> Upgrade:
    """Migrate an existing hpsearch database in place to this hpsearch's schema version.

    Nothing to do at the current version; a newer one is refused. SQLite: a copy of the file is
    kept as NAME.bak first, and an existing NAME.bak stops the upgrade before it starts.
    """
    status = schema_status(db)
    check_readable(status.version, status.db)
    if status.current:
        return Upgrade(status.db, status.version, status.version, None)
    from storage._migrate import upgrade as migrate_in_place  # Alembic only to upgrade

    backup = migrate_in_place(db, status.version)
    return Upgrade(status.db, status.version, HEAD, backup)
