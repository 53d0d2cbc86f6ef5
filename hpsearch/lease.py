"""One driver per stage: a lease on a study's stage of a kind, held while a driver runs it.

Looked at after planning and before Ray starts: a second driver finds it held and stops with
one line naming the holder, having changed nothing. Taken once Ray is up (Ray may refuse the
resources asked for: the database stays untouched); of two drivers that got that far at once,
one takes it and the other stops the same way. The holder renews its heartbeat from a small
thread every few seconds (a trial may send nothing for minutes) and at every commit, inside
the commit's transaction: a driver whose lease was taken over writes nothing more. A lease is
taken over when its heartbeat is older than `STALE_SECONDS`, or at once when its holder ran
on this host and its process is gone (`kill -9`, then rerun, resumes at once). It is released
when the stage ends, on an error, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Connection

from hpsearch import planner
from hpsearch.driver import history, plan_stage
from hpsearch.errors import HpsearchError
from hpsearch.planner import NewStage, Plan, Resume, StageRequest, Start
from hpsearch.spec import StudySpec
from storage import (
    Lease,
    StorageError,
    Store,
    beat,
    current_lease,
    now,
    release_lease,
    renew_lease,
    take_lease,
)

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 30.0  # a heartbeat this old means its driver is gone (or cut off): take over


class LeaseLost(HpsearchError):
    """Another driver took this driver's lease over: it must write nothing more."""


@contextmanager
def stage_lease(store: Store, spec: StudySpec, request: StageRequest, plan: Plan) -> Iterator[Plan]:
    """Hold the lease on the planned stage; yields the plan, made again if another driver
    changed the study between planning and the lease."""
    lease = acquire(store, spec.name, str(request.kind), plan)
    heartbeat = _Heartbeat(store, lease)
    store.fence = heartbeat.fence
    try:
        heartbeat.start()
        yield _still_current(store, spec, request, plan)
    finally:
        store.fence = None
        heartbeat.stop()
        with suppress(StorageError):  # the database may be what failed
            release_lease(store, lease)


def check_free(store: Store, spec: StudySpec, request: StageRequest, plan: Plan) -> None:
    """Before Ray starts, reading only: a live holder of the lease stops this driver."""
    kind = str(request.kind)
    holder = current_lease(store, spec.name, kind)
    if holder is not None and not _gone(holder):
        raise HpsearchError(_held(holder, spec.name, kind, plan))


def acquire(store: Store, study: str, kind: str, plan: Plan) -> Lease:
    """This driver's lease, taken over from a dead holder if need be; a live holder stops it."""
    at = now()
    mine = Lease(study, kind, uuid.uuid4().hex, socket.gethostname(), os.getpid(), at, at)
    for _ in range(3):  # a holder that ends just as we read it: look again
        holder = current_lease(store, study, kind)
        if holder is not None and not _gone(holder):
            raise HpsearchError(_held(holder, study, kind, plan))
        if take_lease(store, mine, holder):
            return mine
        mine = replace(mine, acquired_at=now(), heartbeat_at=now())
    raise HpsearchError(f"study {study!r}: drivers keep taking its {kind} stage: try again")


def _gone(holder: Lease) -> bool:
    """The holder no longer runs: no heartbeat for STALE_SECONDS, or its process has ended."""
    if (now() - holder.heartbeat_at).total_seconds() > STALE_SECONDS:
        return True
    return holder.host == socket.gethostname() and not _running(holder.pid)


def _running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Killed but not yet reaped by its parent: `kill(pid, 0)` still succeeds (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc here, or the process just went
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"  # the state follows the command's name


def _held(holder: Lease, study: str, kind: str, plan: Plan) -> str:
    stage = (
        f"stage {plan.stage.stage_id} ({kind})" if isinstance(plan, Resume) else f"a {kind} stage"
    )
    age = max(0.0, (now() - holder.heartbeat_at).total_seconds())
    return (
        f"{stage} of study {study!r} is being run by another driver (host {holder.host}, "
        f"pid {holder.pid}, last heartbeat {age:.0f} s ago): wait for it to end or stop it; "
        f"a driver silent for {STALE_SECONDS:.0f} s is taken over"
    )


def _still_current(store: Store, spec: StudySpec, request: StageRequest, plan: Plan) -> Plan:
    """The plan, or a new one if the study changed before the lease was ours (another driver
    finished the stage to resume, or started the stage this plan would start)."""
    past = history(store, spec, request)
    decision = planner.decide(spec, request, past)
    if isinstance(plan, Resume) and isinstance(decision, Resume):
        if decision.stage.stage_id == plan.stage.stage_id:
            return plan
    if isinstance(plan, NewStage) and isinstance(decision, Start):
        parent = decision.parent.stage_id if decision.parent else None
        seed = request.seed if request.seed is not None else spec.seed + len(past.stages)
        if (parent, seed) == (plan.parent_stage_id, plan.seed):
            return plan
    return plan_stage(store, spec, request)


class _Heartbeat:
    """Renews the lease every HEARTBEAT_SECONDS from its own thread (and own connection)."""

    def __init__(self, store: Store, lease: Lease) -> None:
        self.store = store
        self.lease = lease
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpsearch-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * HEARTBEAT_SECONDS)

    def fence(self, conn: Connection) -> None:
        """Inside a commit's transaction: renew, or refuse to write if the lease is lost."""
        if self.lost or not renew_lease(conn, self.lease, now()):
            self.lost = True
            raise LeaseLost(
                f"study {self.lease.study!r}: another driver took over its {self.lease.kind} "
                f"stage after this one sent no heartbeat for {STALE_SECONDS:.0f} s: stopped "
                "without writing the results still unsaved"
            )

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                if not beat(self.store, self.lease, now()):
                    self.lost = True
                    return
            except StorageError:
                continue  # the database is unreachable for now: the next beat tries again
