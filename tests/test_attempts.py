"""The `attempts` table: every attempt of a trial keeps its node, its times and how it ended."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from hpsearch.driver import run_stage, start_or_resume
from storage import Batch, Store
from tests.test_driver import coarse_plan, executor, make_study

T = [datetime(2026, 1, 1, 0, 0, s) for s in range(10)]
S = [f"{t:%Y-%m-%d %H:%M:%S}.000000" for t in T]  # as SQLite stores them


def attempts(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM attempts ORDER BY trial_id, attempt").fetchall()
    finally:
        conn.close()


def new_trials(store: Store, n: int) -> list[int]:
    study = store.ensure_study("s", "noop", "val_acc", "max")
    stage = store.begin_stage(
        study.study_id, "coarse", seed=0, epochs=2, ranges={}, fixed={},
        configs=[{"x": i} for i in range(n)], seeds=list(range(n)),
    )  # fmt: skip
    return [t.trial_id for t in store.trials(stage.stage_id)]


def finish(
    batch: Batch, trial_id: int, status: str, attempt: int, error: str | None, at: int
) -> None:
    batch.finish(trial_id, status, attempt=attempt, error=error, best=None, epochs_run=1, at=T[at])


def test_a_lost_attempt_keeps_its_node_and_reason_next_to_the_retry(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    store = Store(str(db))
    retried, failed, unstarted = new_trials(store, 3)
    first = Batch()
    first.start(retried, 1, "node-a", T[0])
    first.start(failed, 1, "node-a", T[0])
    store.record(first)
    second = Batch()  # the end of an attempt arrives in a later batch than its start
    second.lose(retried, 1, "worker lost: node-a died", T[1])
    second.start(retried, 2, "node-b", T[2])
    finish(second, retried, "completed", 2, None, 3)
    finish(second, failed, "failed", 1, "ValueError: bad", 4)
    finish(second, unstarted, "failed", 1, "its task failed before it started", 5)
    store.record(second)
    assert attempts(db) == [
        (retried, 1, "node-a", S[0], S[1], "lost", "worker lost: node-a died"),
        (retried, 2, "node-b", S[2], S[3], "completed", None),
        (failed, 1, "node-a", S[0], S[4], "failed", "ValueError: bad"),
        (unstarted, 1, None, None, S[5], "failed", "its task failed before it started"),
    ]
    last = {t.trial_id: t for t in store.trials(store.stages(1)[0].stage_id)}[retried]
    assert (last.status, last.attempts, last.node_id) == ("completed", 2, "node-b")  # as before


def test_deleting_a_trial_deletes_its_attempts(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    store = Store(str(db))
    (trial_id,) = new_trials(store, 1)
    batch = Batch()
    batch.start(trial_id, 1, "n", T[0])
    store.record(batch)
    store.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM trials")
    conn.commit()
    conn.close()
    assert attempts(db) == []


def test_a_stage_records_one_attempt_per_trial_with_its_outcome(tmp_path: Path) -> None:
    spec = make_study(tmp_path)
    db = tmp_path / "h.db"
    store = Store(str(db))
    _, stage, _ = start_or_resume(store, spec, coarse_plan(spec))
    run_stage(store, spec, stage, executor(spec))
    trials = {t.trial_id: t for t in store.trials(stage.stage_id)}
    rows = attempts(db)
    assert [(r[0], r[1]) for r in rows] == [(tid, 1) for tid in sorted(trials)]
    for trial_id, _, node, started, finished, outcome, reason in rows:
        trial = trials[trial_id]
        assert (node, outcome, reason) == ("local", trial.status, trial.error)
        assert started is not None and finished is not None and started <= finished
    assert {r[5] for r in rows} == {"completed", "failed", "diverged"}


def test_an_interrupted_attempt_stays_open_and_the_resumed_one_has_its_own_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_study(tmp_path, kinds='["ok"]')
    db = tmp_path / "h.db"
    store = Store(str(db))
    _, stage, _ = start_or_resume(store, spec, coarse_plan(spec))
    monkeypatch.setenv("HPSEARCH_TEST_INTERRUPT", "1")
    with pytest.raises(KeyboardInterrupt):
        run_stage(store, spec, stage, executor(spec))
    interrupted = [t.trial_id for t in store.trials(stage.stage_id) if t.status == "running"]
    monkeypatch.delenv("HPSEARCH_TEST_INTERRUPT")
    _, again, resumed = start_or_resume(store, spec, coarse_plan(spec))
    run_stage(store, spec, again, executor(spec))
    assert resumed and interrupted
    rows = {(r[0], r[1]): r for r in attempts(db)}
    for trial_id in interrupted:
        assert rows[(trial_id, 1)][4:] == (None, None, None)  # no end was seen: the driver stopped
        assert rows[(trial_id, 2)][5] == "completed"
    assert len(rows) == spec.coarse.trials + len(interrupted)
