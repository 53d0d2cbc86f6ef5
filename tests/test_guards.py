"""Issue 11's guards on a running stage: a row no database stores fails only its trial (case 1),
a database file deleted mid-stage stops the driver (case 2), one driver per stage (case 6)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from hpsearch import HpsearchError, Study, lease
from hpsearch.commits import Committer
from hpsearch.driver import begin, plan_stage
from hpsearch.lease import LeaseLost, acquire, stage_lease
from hpsearch.planner import StageRequest
from hpsearch.runtime.worker import Ended, EpochDone, TrialTask, run_trial
from storage import (
    Batch,
    Lease,
    StageKind,
    Status,
    StorageError,
    Store,
    current_lease,
    now,
    take_lease,
)
from tests.conftest import db_rows, query
from tests.test_e2e_coarse import _start_driver, _wait_for_rows, study

BAD_NAME = "bad" + chr(0xD800) + "name"  # a lone surrogate, as from bytes decoded carelessly


def new_stage(store: Store, n: int) -> list[int]:
    """A coarse stage of `n` pending trials; their ids."""
    study = store.ensure_study("guards", "noop", "val_acc", "max")
    stage = store.begin_stage(
        study.study_id,
        "coarse",
        seed=0,
        epochs=2,
        ranges={},
        fixed={},
        configs=[{"x": float(i)} for i in range(n)],
        seeds=list(range(n)),
    )
    return [t.trial_id for t in store.trials(stage.stage_id)]


# -- case 1: rows cannot poison a batch ----------------------------------------------------
@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({BAD_NAME: 1.0}, r"metric name 'bad\ud800name' is not valid UTF-8"),
        ({"a\x00b": 1.0}, r"metric name 'a\x00b' contains a NUL character"),
        ({"x" * 201: 1.0}, "has 201 characters (at most 200)"),
        ({"big": 10**400}, "metric 'big' is not a float (int too large to convert to float)"),
    ],
    ids=["surrogate", "nul", "long-name", "huge-int"],
)
def test_the_worker_fails_a_trial_whose_metric_no_database_stores(
    metrics: dict[str, object], reason: str
) -> None:
    def train(params: dict, *, epochs: int, seed: int):  # type: ignore[no-untyped-def]
        yield {"val_acc": 0.5}
        yield {"val_acc": 0.6, **metrics}

    events = list(run_trial(train, TrialTask(1, 1, {}, 0, 3), "val_acc"))
    assert [type(e) for e in events] == [EpochDone, Ended]
    end = events[-1]
    assert isinstance(end, Ended) and end.status == Status.FAILED
    error = end.error or ""
    assert error.startswith("epoch 2: metric") and reason in error
    assert "\n" not in error
    error.encode("utf-8")  # the reason itself is storable


def test_non_finite_metrics_still_mean_diverged() -> None:
    def train(params: dict, *, epochs: int, seed: int):  # type: ignore[no-untyped-def]
        yield {"val_acc": float("inf"), "other": 1}

    end = list(run_trial(train, TrialTask(1, 1, {}, 0, 3), "val_acc"))[-1]
    assert isinstance(end, Ended) and end.status == Status.DIVERGED


def test_an_error_text_no_database_stores_is_escaped() -> None:
    def train(params: dict, *, epochs: int, seed: int):  # type: ignore[no-untyped-def]
        yield {"val_acc": 0.5}
        raise RuntimeError(f"broke on {BAD_NAME} with a \x00")

    end = list(run_trial(train, TrialTask(1, 1, {}, 0, 3), "val_acc"))[-1]
    assert isinstance(end, Ended) and end.status == Status.FAILED
    assert r"RuntimeError: broke on bad\ud800name with a \x00" in (end.error or "")


def trial_rows(batch: Batch, trial_id: int, names: list[str], *, status: str) -> None:
    """A whole one-epoch trial in `batch`: its start, a metric per name, its end."""
    at = now()
    batch.start(trial_id, 1, "node", at)
    batch.metrics.extend(
        {"trial_id": trial_id, "attempt": 1, "epoch": 1, "name": n, "value": 0.5} for n in names
    )
    batch.finish(trial_id, status, attempt=1, error=None, best=(0.5, 1), epochs_run=1, at=at)


def test_a_refused_row_fails_its_trial_and_the_others_land(db_url: str) -> None:
    """Rows the worker's check would stop, written by the driver anyway (a second line of
    defence): on PostgreSQL a name over the column's 200 characters and a NUL are refused too."""
    store = Store(db_url)
    bad_names = [BAD_NAME]
    if not db_url.endswith(".db"):  # PostgreSQL enforces what SQLite does not
        bad_names += ["x" * 201, "a\x00b"]
    trial_ids = new_stage(store, 2 * len(bad_names) + 1)
    healthy, bad = trial_ids[::2], trial_ids[1::2]
    batch = Batch()
    for tid in healthy:
        trial_rows(batch, tid, ["val_acc", "loss"], status="completed")
    for tid, name in zip(bad, bad_names, strict=True):
        trial_rows(batch, tid, ["val_acc", name], status="completed")
    counts: dict[str, int] = {"completed": len(trial_ids)}
    commit = Committer(store, counts)
    commit(batch)

    rows = dict(db_rows(db_url, "SELECT trial_id, status FROM trials"))
    assert {rows[t] for t in healthy} == {"completed"}
    assert {rows[t] for t in bad} == {"failed"}
    assert counts == {"completed": len(healthy), "failed": len(bad)}
    stored = db_rows(db_url, "SELECT trial_id, name FROM metrics ORDER BY 1, 2")
    assert stored == sorted((t, n) for t in healthy for n in ("loss", "val_acc"))
    errors = dict(db_rows(db_url, "SELECT trial_id, error FROM trials WHERE status = 'failed'"))
    assert all(e.startswith("its results could not be stored: ") for e in errors.values())
    assert "surrogates not allowed" in errors[bad[0]]
    attempts = db_rows(db_url, "SELECT trial_id, outcome FROM attempts ORDER BY 1")
    assert attempts == sorted((t, rows[t]) for t in trial_ids)  # every attempt is closed

    later = Batch()  # the bad trial's worker ran on: its later rows are dropped, not retried
    later.metrics.append({"trial_id": bad[0], "attempt": 1, "epoch": 2, "name": "v", "value": 1})
    later.finish(bad[0], "completed", attempt=1, error=None, best=None, epochs_run=2, at=now())
    counts["completed"] += 1  # as the driver's tracker counts an end it receives
    commit(later)
    assert db_rows(db_url, f"SELECT status FROM trials WHERE trial_id = {bad[0]}") == [("failed",)]
    assert counts == {"completed": len(healthy), "failed": len(bad)}
    store.close()


# -- case 2: the database never vanishes silently ------------------------------------------
def test_a_database_deleted_mid_stage_stops_the_driver(tmp_path: Path, ray_address: str) -> None:
    spec, db = study(tmp_path, trials=8, sleep=0.2), tmp_path / "h.db"
    proc = _start_driver(spec, db, ray_address)
    _wait_for_rows(db, 8, proc)
    for path in tmp_path.glob("h.db*"):  # `rm results.db*`
        path.unlink()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, (stdout, stderr)
    assert stderr.strip().splitlines() == [
        f"hpsearch: error: {db} was deleted or replaced while the stage ran: stopped (what this "
        "run wrote went with the old file); rerun the command to run on the file now there"
    ]
    assert "next:" not in stdout and not db.exists()


def test_a_database_replaced_under_the_store_is_noticed_before_the_next_write(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.db"
    store = Store(str(db))
    trial_id = new_stage(store, 1)[0]
    copy = tmp_path / "copy.db"
    with sqlite3.connect(db) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # a restored backup, moved into place
    os.replace(copy, db)
    batch = Batch()
    trial_rows(batch, trial_id, ["val_acc"], status="completed")
    with pytest.raises(StorageError, match="was deleted or replaced while the stage ran"):
        store.record(batch)
    assert query(db, "SELECT status FROM trials") == [("pending",)]  # the new file untouched
    store.close()


# -- case 6: one driver per stage -----------------------------------------------------------
def train_lease(params: dict, *, epochs: int, seed: int):  # type: ignore[no-untyped-def]
    for epoch in range(1, epochs + 1):
        yield {"val_acc": params["x"] * epoch}


def lease_study(db: str, name: str = "leased") -> Study:
    spec = {
        "name": name,
        "trainable": train_lease,
        "metric": "val_acc",
        "space": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
        "coarse": {"trials": 3, "epochs": 2},
    }
    return Study.from_spec(spec, db)


def holder(study: str, *, host: str, pid: int, age: float) -> Lease:
    at = now() - timedelta(seconds=age)
    return Lease(study, "coarse", uuid.uuid4().hex, host, pid, at, at)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_lease_stops_a_second_driver_and_changes_nothing(db_url: str) -> None:
    study = lease_study(db_url)
    study.coarse(trials=2, epochs=1, executor="local")  # stage 1, finished
    assert take_lease(study.store, holder("leased", host="gpu-7", pid=4242, age=3), None)
    before = {t: db_rows(db_url, f"SELECT * FROM {t}") for t in ("stages", "trials", "metrics")}
    with pytest.raises(HpsearchError) as info:
        study.coarse(executor="local")
    assert str(info.value) == (
        "a coarse stage of study 'leased' is being run by another driver (host gpu-7, pid 4242, "
        "last heartbeat 3 s ago): wait for it to end or stop it; a driver silent for 30 s is "
        "taken over"
    )
    assert {t: db_rows(db_url, f"SELECT * FROM {t}") for t in before} == before
    assert db_rows(db_url, "SELECT host, pid FROM stage_leases") == [("gpu-7", 4242)]
    study.close()


@pytest.mark.parametrize(
    "gone",
    [
        {"host": "gpu-7", "pid": 4242, "age": 31},  # no heartbeat for longer than 30 s
        {"host": socket.gethostname(), "pid": -1, "age": 0},  # this host, its process ended
    ],
    ids=["stale-heartbeat", "dead-process-on-this-host"],
)
def test_a_lease_whose_driver_is_gone_is_taken_over(db_url: str, gone: dict) -> None:
    study = lease_study(db_url)
    if gone["pid"] == -1:
        gone["pid"] = dead_pid()
    assert take_lease(study.store, holder("leased", **gone), None)
    result = study.coarse(executor="local")
    assert result.counts == {"completed": 3}
    assert db_rows(db_url, "SELECT count(*) FROM stage_leases") == [(0,)]  # released at the end
    study.close()


def test_a_killed_driver_not_yet_reaped_is_gone() -> None:
    """`kill -9` of a driver whose parent has not reaped it yet (a zombie): its lease is free."""
    from hpsearch.lease import _running

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _running(child.pid)
        child.kill()
        deadline = time.monotonic() + 30
        while _running(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(child.pid)
        assert child.poll() is not None  # reaped only now: it was a zombie until here
    finally:
        child.kill()
        child.wait()


def test_drivers_racing_for_one_lease_exactly_one_wins(db_url: str) -> None:
    """Eight drivers at once, for a free lease and then for a stale one (the conditional UPDATE)."""
    stores = [Store(db_url) for _ in range(8)]
    for stale in (None, holder("race", host="gone", pid=1, age=60)):
        if stale is not None:
            take_lease(stores[0], stale, current_lease(stores[0], "race", "coarse"))
        start = threading.Barrier(len(stores))

        def drive(store: Store, start: threading.Barrier = start) -> str:
            start.wait()
            try:
                return acquire(store, "race", "coarse", plan=None).driver_id  # type: ignore[arg-type]
            except HpsearchError as exc:
                return str(exc)

        with ThreadPoolExecutor(len(stores)) as pool:
            outcomes = list(pool.map(drive, stores))
        winners = [o for o in outcomes if "being run by another driver" not in o]
        assert len(winners) == 1, outcomes
        assert current_lease(stores[0], "race", "coarse").driver_id == winners[0]  # type: ignore[union-attr]
    for store in stores:
        store.close()


def test_a_driver_whose_lease_was_taken_over_writes_nothing_more(db_url: str) -> None:
    study = lease_study(db_url)
    store, spec = study.store, study.spec
    request = StageRequest(StageKind.COARSE, 2, 1)
    with stage_lease(store, spec, request, plan_stage(store, spec, request)) as plan:
        _, stage, _ = begin(store, spec, plan)
        trial_id = store.trials(stage.stage_id)[0].trial_id
        mine = current_lease(store, "leased", "coarse")
        assert mine is not None and mine.pid == os.getpid()
        taker = holder("leased", host="other", pid=1, age=0)
        assert take_lease(store, taker, mine)  # as if this driver had been silent for 30 s
        batch = Batch()
        trial_rows(batch, trial_id, ["val_acc"], status="completed")
        with pytest.raises(LeaseLost, match="another driver took over its coarse stage"):
            store.record(batch)
        with pytest.raises(LeaseLost):
            store.add_trials(stage.stage_id, 2, [{"x": 0.5}], [7])
        with pytest.raises(LeaseLost):
            store.finish_stage(stage.stage_id, proposal={"x": {"type": "uniform"}})
    assert db_rows(db_url, "SELECT count(*) FROM metrics") == [(0,)]
    assert db_rows(db_url, "SELECT status, proposal FROM stages") == [("running", None)]
    assert db_rows(db_url, "SELECT count(*) FROM trials") == [(2,)]
    assert db_rows(db_url, "SELECT driver_id FROM stage_leases") == [(taker.driver_id,)]
    study.close()


def test_the_heartbeat_renews_the_lease_while_a_trial_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease, "HEARTBEAT_SECONDS", 0.05)
    study = lease_study(str(tmp_path / "h.db"))
    store, spec = study.store, study.spec
    request = StageRequest(StageKind.COARSE, 2, 1)
    with stage_lease(store, spec, request, plan_stage(store, spec, request)):
        first = current_lease(store, "leased", "coarse")
        assert first is not None
        deadline = time.monotonic() + 30
        while current_lease(store, "leased", "coarse") == first:  # type: ignore[comparison-overlap]
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.02)
    assert current_lease(store, "leased", "coarse") is None  # released
    study.close()
