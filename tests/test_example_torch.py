"""The PyTorch example trainable, called directly as plain Python (as its users would)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import torch_mlp  # noqa: E402  (needs torch==2.13.0: the `torch` extra, installed by .ci/run)

PARAMS = {"lr": 3e-3, "reg": 1e-5, "dropout": 0.1, "hidden": 32, "batch": 64}


def test_restore_continues_where_the_checkpoint_was_made(tmp_path: Path) -> None:
    every, kept = tmp_path / "every", tmp_path / "kept"
    every.mkdir()
    straight = []
    run = torch_mlp.train(PARAMS, epochs=3, seed=1, checkpoint_dir=str(every))
    for epoch, metrics in enumerate(run, start=1):
        straight.append(metrics)
        if epoch == 1:
            shutil.copytree(every, kept)
    resumed = list(torch_mlp.train(PARAMS, epochs=3, seed=1, restore_dir=str(kept)))
    assert len(resumed) == 2
    for a, b in zip(straight[1:], resumed, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_acc"] == pytest.approx(b["val_acc"])


def test_predict_and_first_layer_read_the_checkpoint(tmp_path: Path) -> None:
    last = list(torch_mlp.train(PARAMS, epochs=2, seed=0, checkpoint_dir=str(tmp_path)))[-1]
    probs, labels = torch_mlp.predict(PARAMS, checkpoint_dir=str(tmp_path), split="val")
    assert probs.shape == (300, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert float((probs.argmax(axis=1) == labels).mean()) == pytest.approx(last["val_acc"])
    assert torch_mlp.first_layer(PARAMS, checkpoint_dir=str(tmp_path)).shape == (32, 8, 8)


def test_ensemble_of_the_torch_example(tmp_path: Path) -> None:
    """The example's coarse stage keeps checkpoints; a `top` ensemble averages the best trials'
    predictions (torch_mlp.predict, named in the spec) and records them."""
    from hpsearch.api import Study
    from tests.conftest import query

    for name in ("torch_mlp.py", "torch_mlp.toml"):
        shutil.copy(ROOT / "examples" / name, tmp_path / name)
    db = tmp_path / "h.db"
    study = Study.from_spec(tmp_path / "torch_mlp.toml", db)
    study.coarse(trials=4, epochs=2, executor="local")
    result = study.ensemble("top", size=3)
    study.close()
    assert (result.ensemble_id, result.kind, result.stage_id, result.size) == (1, "top", 1, 3)
    ((accuracy, best_member),) = query(db, "SELECT accuracy, best_member_accuracy FROM ensembles")
    members = query(db, "SELECT trial_id, epoch, accuracy FROM ensemble_members")
    assert len(members) == 3 and best_member == max(a for _, _, a in members)
    trial_id, epoch, member_accuracy = members[0]
    (uri,) = query(db, f"SELECT uri FROM checkpoints WHERE trial_id = {trial_id} AND "
                       f"epoch = {epoch} AND uri LIKE '%model.pt'")[0]  # fmt: skip
    params = dict(query(db, f"SELECT name, value FROM params WHERE trial_id = {trial_id}"))
    fixed = {"hidden": 64, "batch": 64}  # the spec's [fixed]
    where = str(Path(uri).parent)
    probs, labels = torch_mlp.predict({**fixed, **params}, checkpoint_dir=where, split="val")
    assert float((probs.argmax(axis=1) == labels).mean()) == pytest.approx(member_accuracy)
    assert (result.accuracy, result.best_member_accuracy) == (accuracy, best_member)
