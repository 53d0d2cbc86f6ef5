"""Checkpoints: the table and the Store's methods on SQLite and PostgreSQL, the artifact store
they point into, restore on retry and resume, retention, `best --out`."""

from __future__ import annotations

from pathlib import Path

from storage import ArtifactStore, Batch, CheckpointRecord, Store, now
from tests.conftest import db_rows
from tests.test_store import new_stage


def test_checkpoint_files_are_recorded_listed_latest_last_and_deleted(
    db_url: str, tmp_path: Path
) -> None:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    store = Store(db_url)
    _, stage_id = new_stage(store, n=2)
    first, second = (t.trial_id for t in store.trials(stage_id))
    batch = Batch()
    batch.start(first, 1, None, now())
    for epoch in (1, 2):
        files = {"model.npz": bytes([epoch]) * 10, "state.json": b"{}"}
        batch.checkpoint(first, 1, epoch, artifacts.put(f"s/1/{first}/1/{epoch}", files))
    batch.checkpoint(second, 1, 1, artifacts.put(f"s/1/{second}/1/1", {"w.npz": b"x"}))
    store.record(batch)

    found = store.checkpoints(first)
    assert [(c.attempt, c.epoch, c.name) for c in found] == [
        (1, 1, "model.npz"), (1, 1, "state.json"), (1, 2, "model.npz"), (1, 2, "state.json")
    ]  # fmt: skip
    assert all(Path(c.uri).is_absolute() and Path(c.uri).is_file() for c in found)
    assert found[2].bytes == 10 and len(found[2].sha256) == 64
    latest = store.latest_checkpoint(first)
    assert {(c.epoch, c.name) for c in latest} == {(2, "model.npz"), (2, "state.json")}
    assert isinstance(latest[0], CheckpointRecord)
    assert len(store.stage_checkpoints(stage_id)) == 5

    old = [c.uri for c in found if c.epoch == 1]
    assert store.delete_checkpoints(old) == 2
    assert [c.epoch for c in store.checkpoints(first)] == [2, 2]
    assert store.latest_checkpoint(second)[0].name == "w.npz"
    store.close()
    counted = db_rows(db_url, "SELECT trial_id, count(*), sum(bytes) FROM checkpoints GROUP BY 1")
    assert sorted(counted) == [(first, 2, 12), (second, 1, 1)]
