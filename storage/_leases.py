"""Stage leases: the rows saying which driver runs a study's stage of a kind.

Only the rows live here; when a lease may be taken over (a stale heartbeat, a dead process) is
the driver's policy (`hpsearch.lease`). Every change is one conditional statement, so of two
drivers racing for a lease exactly one wins, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from storage._models import StageLease, table

if TYPE_CHECKING:
    from storage._store import Store

_leases = table(StageLease)
_UPSERTS: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


@dataclass(frozen=True)
class Lease:
    study: str
    kind: str
    driver_id: str
    host: str
    pid: int
    acquired_at: datetime
    heartbeat_at: datetime


def _this(study: str, kind: str) -> Any:
    return (_leases.c.study == study) & (_leases.c.kind == kind)


def current_lease(store: Store, study: str, kind: str) -> Lease | None:
    """The lease on the study's stage of this kind, if a driver holds (or held) one."""
    with store._session() as s:
        row = s.execute(select(_leases).where(_this(study, kind))).mappings().one_or_none()
        return Lease(**row) if row else None


def take_lease(store: Store, lease: Lease, replacing: Lease | None) -> bool:
    """Write `lease` if no driver holds one, or over `replacing` if that is still the holder
    (as read, heartbeat and all). False: another driver got there first."""
    with store._session() as s:
        if replacing is None:
            return _insert_if_absent(s.connection(), asdict(lease))
        done = s.execute(
            update(_leases)
            .where(
                _this(lease.study, lease.kind),
                _leases.c.driver_id == replacing.driver_id,
                _leases.c.heartbeat_at == replacing.heartbeat_at,
            )
            .values(asdict(lease))
        )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def _insert_if_absent(conn: Connection, row: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL); True if the row went in."""
    upsert = _UPSERTS.get(conn.dialect.name)
    if upsert is None:  # another database: a second driver's insert fails on the primary key
        conn.execute(insert(_leases).values(row))
        return True
    statement = upsert(_leases).values(row).on_conflict_do_nothing()
    # RETURNING, not rowcount: psycopg reports no rowcount for this statement
    return conn.execute(statement.returning(_leases.c.driver_id)).first() is not None


def renew_lease(conn: Connection, lease: Lease, at: datetime) -> bool:
    """The holder's heartbeat, inside the caller's transaction; False: the lease was taken over."""
    done = conn.execute(
        update(_leases)
        .where(_this(lease.study, lease.kind), _leases.c.driver_id == lease.driver_id)
        .values(heartbeat_at=at)
    )
    return bool(done.rowcount == 1)


def beat(store: Store, lease: Lease, at: datetime) -> bool:
    """`renew_lease` in a transaction of its own (the heartbeat between commits)."""
    with store._session() as s:
        return renew_lease(s.connection(), lease, at)


def release_lease(store: Store, lease: Lease) -> None:
    """The holder is done: its row goes (a lease taken over by another driver stays)."""
    with store._session() as s:
        s.execute(
            delete(_leases).where(
                _this(lease.study, lease.kind), _leases.c.driver_id == lease.driver_id
            )
        )
