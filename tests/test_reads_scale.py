"""Reads cost what they return: counted in SQLite virtual-machine steps, not in seconds.

A study with many trials around the ones asked for must not make a read of those trials do
more work. The count comes from SQLite's own progress handler on the real read-only
connection (deterministic, unlike a timing).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import storage
from storage import Batch, Store, _readonly, now

METRICS = ("loss", "acc")


def build(path: Path, trials: int, epochs: int = 3) -> list[int]:
    """A study `big` of `trials` trials, with a second study's stage in the middle of its ids."""
    store = Store(str(path))
    ids: list[int] = []
    for name in ("big", "other", "big"):
        study = store.ensure_study(name, "m:f", "acc", "max")
        n = trials // 2 if name == "big" else 7
        stage = store.begin_stage(study.study_id, "coarse", seed=0, epochs=epochs,
                                  ranges={}, fixed={}, configs=[{"x": float(i)} for i in range(n)],
                                  seeds=list(range(n)))  # fmt: skip
        stage_ids = [t.trial_id for t in store.trials(stage.stage_id)]
        record(store, stage_ids, epochs)
        ids += stage_ids if name == "big" else []
    store.close()
    return ids


def record(store: Store, ids: list[int], epochs: int) -> None:
    batch = Batch()
    for tid in ids:
        batch.start(tid, 1, None, now())
        for epoch in range(1, epochs + 1):
            for name in METRICS:
                value = tid / 1000 + epoch if name == "acc" else 1 / epoch
                batch.metrics.append({"trial_id": tid, "attempt": 1, "epoch": epoch,
                                      "name": name, "value": value})  # fmt: skip
        batch.finish(tid, "completed", attempt=1, error=None, best=(tid / 1000 + epochs, epochs),
                     epochs_run=epochs, at=now())  # fmt: skip
    store.record(batch)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts SQLite VM steps of every read-only connection opened while the test runs."""
    counter = [0]
    real = _readonly._connect_sqlite

    def counting(path: Path, guard: Any) -> sqlite3.Connection:
        conn = real(path, guard)

        def tick() -> int:
            counter[0] += 1
            return 0

        conn.set_progress_handler(tick, 1)
        return conn

    monkeypatch.setattr(_readonly, "_connect_sqlite", counting)
    yield counter


def cost(counter: list[int], read: Any) -> tuple[int, Any]:
    counter[0] = 0
    result = read()
    return counter[0], result


def test_metrics_of_chosen_trials_cost_the_same_in_a_small_and_a_large_study(
    tmp_path: Path, steps: list[int]
) -> None:
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    small_ids, large_ids = build(small, 40), build(large, 800)
    costs = []
    for db, ids in ((small, small_ids), (large, large_ids)):
        chosen = [ids[0], ids[-1]]  # far apart, with the other study between them
        read = partial(storage.load_metrics, str(db), "big", trial_ids=chosen)
        n, frame = cost(steps, read)
        assert sorted(set(frame["trial_id"])) == chosen
        assert len(frame) == 2 * 3 * len(METRICS)
        costs.append(n)
    assert costs[1] < 1.5 * costs[0], costs  # 20x the trials, about the same work


def test_a_whole_study_skips_the_other_study_in_its_id_range(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    ids = build(db, 20)
    frame = storage.load_metrics(str(db), "big")
    assert sorted(set(frame["trial_id"])) == ids
    assert len(frame) == len(ids) * 3 * len(METRICS)


def test_metrics_in_chunks_add_up_to_the_whole_table(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    build(db, 20)
    chunks = list(storage.iter_metrics(str(db), "big", chunk_rows=7))
    assert len(chunks) > 1 and all(len(c) <= 7 for c in chunks)
    whole = storage.load_metrics(str(db), "big")
    joined = pd.concat(chunks, ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.assign(name=whole["name"].astype(str)))


def test_top_k_reads_only_the_best_trials_params(tmp_path: Path, steps: list[int]) -> None:
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    build(small, 40), build(large, 800)
    frames = {}
    for db in (small, large):
        frames[db] = storage.load_trials(str(db), "big", top=5)
        assert list(frames[db]["best_value"]) == sorted(frames[db]["best_value"], reverse=True)
        assert len(frames[db]) == 5 and frames[db]["x"].notna().all()
    everything = storage.load_trials(str(large), "big")
    best = everything.sort_values("best_value", ascending=False, kind="stable").head(5)
    assert list(frames[large]["trial_id"]) == list(best["trial_id"])


def test_a_stages_best_trial_and_counts_are_read_through_the_ranking_index(tmp_path: Path) -> None:
    """`show`'s own queries search the index (stage_id, status, best_value), never scan trials."""
    from storage._queries import _BEST_SQL

    db = tmp_path / "h.db"
    build(db, 40)
    conn = sqlite3.connect(db)
    best = (
        _BEST_SQL.format(order="DESC").replace(":stage", "1").replace(":completed", "'completed'")
    )
    counts = (
        "SELECT t.stage_id, t.status, count(*) FROM trials t JOIN stages st "
        "ON st.stage_id = t.stage_id WHERE st.study_id = 1 GROUP BY t.stage_id, t.status"
    )
    for sql in (best, counts):
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        assert any("INDEX ix_trials_stage_status_best" in step for step in plan), plan
        assert not any(step.startswith("SCAN trials") for step in plan), plan
