"""`hpsearch ensemble` end to end: a coarse stage of the built-in MLP on digits keeps
checkpoints on Ray, then each ensemble kind is built through the real CLI (seeds as a stage on
Ray), checked against predictions recomputed here from the recorded checkpoint files; bad input
is refused in one line with nothing recorded."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import trainables.mlp
from hpsearch.api import Study
from hpsearch.cli.stages import summary_lines
from hpsearch.errors import HpsearchError
from hpsearch.summary import study_document
from storage import load_summary
from tests.conftest import query, run_cli

SPEC = """
name = "ens-e2e"
trainable = "mlp"
metric = "val_acc"
mode = "max"
seed = 3

[fixed]
hidden = 16
train_rows = 200
batch = 50
update = "adam"

[space]
lr = { type = "loguniform", low = 3e-3, high = 3e-2 }

[coarse]
trials = 5
epochs = 3

[checkpoints]
keep_trials = 3
keep_epochs = 3
"""


def ensembles(db: Path) -> list[tuple]:
    return query(db, "SELECT ensemble_id, stage_id, kind, size, split FROM ensembles")


def members(db: Path, ensemble_id: int) -> list[tuple[int, int, float]]:
    return query(
        db,
        f"SELECT trial_id, epoch, accuracy FROM ensemble_members WHERE ensemble_id = {ensemble_id} "
        "ORDER BY trial_id, epoch",
    )


def recomputed(
    db: Path, rows: list[tuple[int, int, float]], split: str
) -> tuple[list[float], float]:
    """Each member's accuracy and the ensemble's, from the checkpoint files the table names."""
    probabilities, labels = [], None
    for trial_id, epoch, _ in rows:
        uris = [u for (u,) in query(db, "SELECT uri FROM checkpoints WHERE trial_id = "
                                        f"{trial_id} AND epoch = {epoch}")]  # fmt: skip
        directory = Path(uris[0]).parent
        params = dict(query(db, f"SELECT name, value FROM params WHERE trial_id = {trial_id}"))
        probs, labels = trainables.mlp.predict(
            {"hidden": 16, "train_rows": 200, "batch": 50, "update": "adam", **params},
            checkpoint_dir=str(directory), split=split,
        )  # fmt: skip
        probabilities.append(probs)
    assert labels is not None
    accuracies = [float((p.argmax(1) == labels).mean()) for p in probabilities]
    return accuracies, float((np.mean(probabilities, axis=0).argmax(1) == labels).mean())


def summary_accuracy(stdout: str) -> float:
    found = re.search(r"\): accuracy (\d\.\d+), best member", stdout)
    assert found, stdout
    return float(found.group(1))


def test_each_ensemble_kind_through_the_cli(tmp_path: Path, ray_address: str) -> None:
    spec, db = tmp_path / "ens.toml", tmp_path / "h.db"
    spec.write_text(SPEC)
    base = ("--db", str(db))
    study = Study.from_spec(spec, db)
    study.coarse()  # on the suite's Ray, which this process runs (ray_address)
    study.close()
    ranked = [t for (t,) in query(db, "SELECT trial_id FROM trials WHERE status = 'completed' "
                                      "ORDER BY best_value DESC, number")]  # fmt: skip

    top = run_cli("ensemble", str(spec), "--kind", "top", "--size", "3", *base, cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    assert ensembles(db) == [(1, 1, "top", 3, "val")]
    rows = members(db, 1)
    assert sorted(t for t, _, _ in rows) == sorted(ranked[:3])
    accuracies, accuracy = recomputed(db, rows, "val")
    assert [a for _, _, a in rows] == pytest.approx(accuracies)
    assert summary_accuracy(top.stdout) == pytest.approx(accuracy, abs=1e-4)

    by_name = run_cli("ensemble", "ens-e2e", "--kind", "checkpoints", "--size", "3", "--split",
                      "test", *base, cwd=tmp_path)  # fmt: skip
    assert by_name.returncode == 0, by_name.stderr
    rows = members(db, 2)
    assert {t for t, _, _ in rows} == {ranked[0]} and len(rows) == 3  # 3 epochs of the best
    accuracies, accuracy = recomputed(db, rows, "test")
    assert [a for _, _, a in rows] == pytest.approx(accuracies)
    assert summary_accuracy(by_name.stdout) == pytest.approx(accuracy, abs=1e-4)

    seeds = run_cli("ensemble", str(spec), "--kind", "seeds", "--size", "2", *base,
                    "--address", ray_address, cwd=tmp_path)  # fmt: skip
    assert seeds.returncode == 0, seeds.stderr
    stage = query(db, "SELECT stage_id, kind, parent_stage_id, n_trials, epochs, status "
                      "FROM stages WHERE stage_id = 2")  # fmt: skip
    assert stage == [(2, "ensemble", 1, 2, 3, "finished")]
    lrs = query(db, "SELECT p.value FROM params p JOIN trials t USING (trial_id) "
                    "WHERE t.stage_id = 2 AND p.name = 'lr'")  # fmt: skip
    best_lr = query(db, f"SELECT value FROM params WHERE trial_id = {ranked[0]} AND name = 'lr'")
    assert lrs == best_lr * 2  # the best configuration, twice, with new seeds
    assert ensembles(db)[-1] == (3, 2, "seeds", 2, "val")
    accuracies, accuracy = recomputed(db, members(db, 3), "val")
    assert summary_accuracy(seeds.stdout) == pytest.approx(accuracy, abs=1e-4)

    document = study_document(load_summary(str(db), "ens-e2e"))  # what show --json prints
    listed = document["ensembles"]
    shown = summary_lines(document, str(db))  # what show prints
    assert any(line.startswith("  ensemble 3 seeds of stage 2 (2 members, val): accuracy ")
               for line in shown), shown  # fmt: skip
    assert [(e["id"], e["kind"], e["stage"], e["size"]) for e in listed] == [
        (1, "top", 1, 3), (2, "checkpoints", 1, 3), (3, "seeds", 2, 2)
    ]  # fmt: skip
    best_member = max(m["accuracy"] for m in listed[0]["members"])
    assert listed[0]["gain"] == pytest.approx(listed[0]["accuracy"] - best_member)

    # a checkpoint file changed on disk, then one deleted: one line, exit 2, nothing recorded
    ((uri,),) = query(db, f"SELECT uri FROM checkpoints WHERE trial_id = {ranked[1]} "
                       "AND uri LIKE '%model.npz' ORDER BY epoch DESC LIMIT 1")  # fmt: skip
    Path(uri).write_bytes(Path(uri).read_bytes()[:-1] + b"x")
    changed = run_cli("ensemble", str(spec), "--kind", "top", "--size", "3", *base, cwd=tmp_path)
    assert changed.returncode == 2
    assert changed.stderr.count("\n") == 1 and "Traceback" not in changed.stderr
    assert f"{uri}: checkpoint file changed on disk" in changed.stderr
    Path(uri).unlink()
    study = Study.from_spec(spec, db)
    with pytest.raises(HpsearchError, match=f"{re.escape(uri)}: checkpoint file is missing"):
        study.ensemble("top", size=3)
    assert len(ensembles(db)) == 3


NOOP = """
name = "plain"
trainable = "noop"
metric = "val_acc"

[space]
lr = { type = "loguniform", low = 1e-3, high = 1e-1 }

[coarse]
trials = 2
epochs = 1
"""


def test_no_predict_or_no_checkpoints_is_refused_and_records_nothing(tmp_path: Path) -> None:
    spec, db = tmp_path / "plain.toml", tmp_path / "h.db"
    spec.write_text(NOOP)
    study = Study.from_spec(spec, db)
    study.coarse(executor="local")
    with pytest.raises(HpsearchError, match="plain.toml: no `predict` for trainable 'noop': add"):
        study.ensemble("top")
    spec.write_text(NOOP.replace('"noop"', '"noop"\npredict = "absent_module:predict"'))
    with pytest.raises(HpsearchError, match="predict 'absent_module:predict': module 'absent_"):
        Study.from_spec(spec, db).ensemble("top")
    (tmp_path / "noop_predict.py").write_text(
        "def predict(params, *, checkpoint_dir, split):\n    pass\n"
    )
    spec.write_text(NOOP.replace('"noop"', '"noop"\npredict = "noop_predict:predict"'))
    with pytest.raises(HpsearchError, match="stage 1: no checkpoints recorded: the trainable"):
        Study.from_spec(spec, db).ensemble("top")
    with pytest.raises(HpsearchError, match="--stage 7: no such stage of study 'plain'"):
        Study.from_spec(spec, db).ensemble("checkpoints", stage=7)
    assert query(db, "SELECT count(*) FROM ensembles") == [(0,)]
    assert query(db, "SELECT count(*) FROM stages") == [(1,)]


def test_an_unfinished_seeds_stage_is_resumed_not_started_again(tmp_path: Path) -> None:
    from hpsearch.driver import begin
    from hpsearch.planner import seeds_stage
    from storage import Store

    spec, db = tmp_path / "ens.toml", tmp_path / "h.db"
    spec.write_text(SPEC.replace("trials = 5", "trials = 2").replace("epochs = 3", "epochs = 2"))
    study = Study.from_spec(spec, db)
    coarse = study.coarse(executor="local")
    store = Store(str(db))
    parent = store.stage(coarse.stage_id)
    best = store.trials(coarse.stage_id)[coarse.best["trial"]]
    assert parent is not None
    _, stopped, _ = begin(store, study.spec, seeds_stage(parent, best, 3, seed=11))
    store.close()  # as if the command was stopped before its first trial ended
    result = study.ensemble("seeds", size=2, executor="local")  # --size is the new stage's only
    assert result.stage_id == stopped.stage_id == 2 and result.size == 3
    assert query(db, "SELECT kind, status, n_trials FROM stages WHERE stage_id = 2") == [
        ("ensemble", "finished", 3)
    ]
    assert query(db, "SELECT count(*) FROM stages") == [(2,)]
