"""Checkpoints: the table and the Store's methods on SQLite and PostgreSQL, the artifact store
they point into, restore on retry and resume, retention, `best --out`."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpsearch import DatabaseError, HpsearchError, Study
from hpsearch.cli.stages import summary_lines
from hpsearch.summary import study_document
from storage import ArtifactStore, Batch, CheckpointRecord, Store, load_summary, now
from tests.conftest import db_rows, query, run_cli
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


# -- in-process stages: a trainable that checkpoints and restores, as a user would write one --
def counting(
    params: dict[str, Any],
    *,
    epochs: int,
    seed: int,
    checkpoint_dir: str | None = None,
    restore_dir: str | None = None,
) -> Iterator[dict[str, float]]:
    """val_acc peaks at epoch `peak` (x times a tent); a running sum is the model's state, so a
    restored run continues exactly. Interrupted (Ctrl-C) once at epoch `stop`, when asked."""
    first, total = 1, 0.0
    if restore_dir is not None:
        state = json.loads((Path(restore_dir) / "state.json").read_text())
        first, total = state["epoch"] + 1, float(np.load(Path(restore_dir) / "w.npy"))
    stop = Path(params["markers"]) / f"stop-{seed}"
    for epoch in range(first, epochs + 1):
        if epoch == params["stop"] and not stop.exists():
            stop.touch()
            raise KeyboardInterrupt
        total += params["x"]
        if checkpoint_dir is not None:
            np.save(Path(checkpoint_dir) / "w.npy", np.array(total), allow_pickle=False)
            (Path(checkpoint_dir) / "state.json").write_text(json.dumps({"epoch": epoch}))
        yield {"val_acc": params["x"] * (1.0 - abs(epoch - params["peak"]) / epochs),
               "total": total}  # fmt: skip


def study_of(tmp_path: Path, *, stop: int = 0, keep: dict[str, int] | None = None) -> Study:
    (tmp_path / "markers").mkdir(exist_ok=True)
    spec = {
        "name": "ckpt",
        "trainable": counting,
        "metric": "val_acc",
        "seed": 1,
        "fixed": {"markers": str(tmp_path / "markers"), "stop": stop, "peak": 2},
        "space": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
        "checkpoints": keep or {},
    }
    return Study.from_spec(spec, tmp_path / "h.db")


def stored_files(tmp_path: Path) -> set[str]:
    root = tmp_path / "h.artifacts"
    return {str(p) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_a_resumed_stage_continues_each_trial_from_its_latest_checkpoint(tmp_path: Path) -> None:
    study = study_of(tmp_path, stop=3, keep={"keep_trials": 5})
    with pytest.raises(KeyboardInterrupt):
        study.coarse(trials=1, epochs=4, executor="local")
    db = tmp_path / "h.db"
    assert query(db, "SELECT attempt, epoch FROM checkpoints GROUP BY 1, 2") == [(1, 1), (1, 2)]
    result = study.coarse(trials=1, epochs=4, executor="local")
    assert result.resumed and result.counts == {"completed": 1}
    per_attempt = query(db, "SELECT attempt, min(epoch), max(epoch), count(*) FROM metrics "
                            "WHERE name = 'val_acc' GROUP BY attempt")  # fmt: skip
    assert per_attempt == [(1, 1, 2, 2), (2, 3, 4, 2)]  # epochs 1-2 were not run again
    totals = query(db, "SELECT epoch, value FROM metrics WHERE name = 'total' ORDER BY epoch")
    x = result.best["params"]["x"]
    assert [t for _, t in totals] == pytest.approx([x, 2 * x, 3 * x, 4 * x])  # state carried on
    assert (result.best["epoch"], result.best["value"]) == (2, pytest.approx(x))  # from attempt 1
    assert query(db, "SELECT epochs_run, best_epoch FROM trials") == [(4, 2)]
    study.close()


def test_a_changed_checkpoint_is_never_restored(tmp_path: Path) -> None:
    study = study_of(tmp_path, stop=3, keep={"keep_trials": 5})
    with pytest.raises(KeyboardInterrupt):
        study.coarse(trials=1, epochs=3, executor="local")
    (latest,) = [c for c in study.store.checkpoints(1) if c.epoch == 2 and c.name == "w.npy"]
    Path(latest.uri).write_bytes(Path(latest.uri).read_bytes()[:-1] + b"\x00")
    study.coarse(trials=1, epochs=3, executor="local")
    rows = query(tmp_path / "h.db", "SELECT attempt, epoch FROM metrics WHERE name = 'total'")
    assert rows == [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3)]  # attempt 2 started from epoch 1
    study.close()


def test_retention_keeps_the_best_trials_best_epochs_and_last_and_deletes_the_rest(
    tmp_path: Path,
) -> None:
    study = study_of(tmp_path, keep={"keep_trials": 2, "keep_epochs": 1})
    result = study.coarse(trials=5, epochs=4, executor="local")
    db = tmp_path / "h.db"
    best_two = query(db, "SELECT trial_id FROM trials ORDER BY best_value DESC LIMIT 2")
    rows = query(db, "SELECT trial_id, attempt, epoch, uri FROM checkpoints")
    # the best two trials keep their best epoch (2, the peak) and their last (4), both files
    expected = {
        (t, 1, e, name) for (t,) in best_two for e in (2, 4) for name in ("state.json", "w.npy")
    }
    assert {(t, a, e, Path(u).name) for t, a, e, u in rows} == expected
    assert stored_files(tmp_path) == {u for *_, u in rows}  # every other file is gone
    assert result.counts == {"completed": 5}
    assert not [
        d for d in (tmp_path / "h.artifacts").rglob("*") if d.is_dir() and not any(d.iterdir())
    ]

    shown = study_document(load_summary(str(db), "ckpt"))["stages"][0]["checkpoints"]
    assert shown == {
        "checkpoints": 4,
        "files": 8,
        "bytes": sum(Path(u).stat().st_size for *_, u in rows),
    }
    assert any(line.startswith("  checkpoints: 4 (8 files, ") for line in summary_lines(
        study_document(load_summary(str(db), "ckpt")), str(db)))  # fmt: skip

    model = study.best_checkpoint(tmp_path / "model")
    about = json.loads((model / "params.json").read_text())
    x = result.best["params"]["x"]
    assert (about["trial_id"], about["epoch"], about["stage"]) == (best_two[0][0], 2, 1)
    assert about["value"] == pytest.approx(x) and about["metric"] == "val_acc"
    assert about["params"] == {"markers": str(tmp_path / "markers"), "stop": 0, "peak": 2, "x": x}
    assert float(np.load(model / "w.npy", allow_pickle=False)) == pytest.approx(2 * x)
    assert sorted(p.name for p in model.iterdir()) == ["params.json", "state.json", "w.npy"]

    with pytest.raises(HpsearchError, match="is not empty"):
        study.best_checkpoint(model)
    (changed,) = [
        u for t, _, e, u in rows if t == best_two[0][0] and e == 2 and u.endswith("w.npy")
    ]
    Path(changed).write_bytes(b"not the recorded weights")
    with pytest.raises(DatabaseError, match="changed on disk"):
        study.best_checkpoint(tmp_path / "other")
    recorded = query(db, f"SELECT sha256 FROM checkpoints WHERE uri = '{changed}'")[0][0]
    now_there = hashlib.sha256(b"not the recorded weights").hexdigest()
    refused = run_cli("best", "ckpt", "--db", str(db), "--out", "other", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"hpsearch: error: {changed}: checkpoint file changed on disk (sha256 "
        f"{now_there[:12]}..., recorded {recorded[:12]}...): it will not be used"
    )
    Path(changed).unlink()
    with pytest.raises(DatabaseError, match="checkpoint file is missing"):
        study.best_checkpoint(tmp_path / "other")
    assert not (tmp_path / "other").exists()  # nothing written
    study.close()


def test_keep_trials_zero_turns_checkpoints_off(tmp_path: Path) -> None:
    study = study_of(tmp_path, keep={"keep_trials": 0})
    study.coarse(trials=2, epochs=2, executor="local")
    assert query(tmp_path / "h.db", "SELECT count(*) FROM checkpoints") == [(0,)]
    assert not (tmp_path / "h.artifacts").exists()
    with pytest.raises(DatabaseError, match="study 'ckpt' has no checkpoints"):
        study.best_checkpoint(tmp_path / "model")
    study.close()


def test_a_failed_checkpoint_write_records_no_row_of_it(tmp_path: Path) -> None:
    study = study_of(tmp_path, keep={"keep_trials": 5})
    blocker = tmp_path / "h.artifacts" / "ckpt" / "1" / "1" / "1" / "2"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where epoch 2's directory would go")
    with pytest.raises(DatabaseError, match="cannot write ckpt/1/1/1/2"):
        study.coarse(trials=1, epochs=3, executor="local")
    rows = query(tmp_path / "h.db", "SELECT epoch, uri FROM checkpoints")
    assert {e for e, _ in rows} == {1}  # epoch 1's files, nothing of epoch 2
    assert all(Path(u).is_file() and not Path(u).name.endswith(".tmp") for _, u in rows)
    study.close()


SERVER_SPEC = """
name = "needs-artifacts"
trainable = "softmax"
metric = "val_acc"
[space]
lr = { type = "loguniform", low = 1e-3, high = 1.0 }
"""


def test_a_server_database_needs_artifacts_for_a_checkpointing_trainable(
    pg_url: str, tmp_path: Path
) -> None:
    (tmp_path / "study.toml").write_text(SERVER_SPEC)
    done = run_cli("coarse", "study.toml", "--db", pg_url, "-q", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith(
        "checkpoints need a place of their own next to a server database: "
        "give --artifacts DIR or URL"
    ), line
    assert db_rows(pg_url, "SELECT count(*) FROM stages") == [(0,)]  # nothing ran


def test_hpsearch_never_unpickles_what_it_reads_back() -> None:
    """Checkpoint files are copied as bytes and checked by sha256: no module of hpsearch or
    storage imports pickle or loads numpy or torch files (the trainables load their own, with
    allow_pickle=False / weights_only=True)."""
    root = Path(__file__).resolve().parent.parent
    for path in [*root.glob("hpsearch/**/*.py"), *root.glob("storage/**/*.py")]:
        text = path.read_text()
        assert not re.search(r"^\s*(import|from) (pickle|cloudpickle|dill)\b", text, re.M), path
        assert "np.load(" not in text and "torch.load(" not in text, path
