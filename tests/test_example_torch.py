"""The PyTorch example trainable: called directly as plain Python (as its users would), and
end to end through the CLI on Ray: coarse, fine, a lost trial resumed, `best --out`."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import torch_mlp  # noqa: E402  (needs torch==2.13.0: the `torch` extra, installed by .ci/run)

from tests.conftest import query, run_cli  # noqa: E402

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


class Payload:
    """Unpickling this runs code: what a tampered checkpoint file could hold."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, ("import pathlib; pathlib.Path('pwned').touch()",))


def test_a_pickled_object_in_a_checkpoint_is_refused_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / torch_mlp.CHECKPOINT).write_bytes(
        pickle.dumps({"model": Payload()}, protocol=2)
    )
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch_mlp.predict(PARAMS, checkpoint_dir=str(tmp_path / "ckpt"))
    assert not (tmp_path / "pwned").exists()


# The example, wrapped so that the first trial to finish epoch 2 loses its worker process (as
# the OOM killer would end it), after epoch 2's checkpoint has reached the driver.
DYING = """
import os
import time
from pathlib import Path

import torch_mlp

predict = torch_mlp.predict


def train(params, *, epochs, seed, checkpoint_dir=None, restore_dir=None):
    run = torch_mlp.train(params, epochs=epochs, seed=seed, checkpoint_dir=checkpoint_dir,
                          restore_dir=restore_dir)
    for epoch, metrics in enumerate(run, start=1):
        yield metrics
        if restore_dir is None and epoch == 2 and first_to_die(params["markers"]):
            time.sleep(1.0)
            os._exit(1)


def first_to_die(markers):
    try:
        os.close(os.open(Path(markers) / "died", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True
"""


def test_coarse_fine_a_lost_trial_resumed_from_its_checkpoint_and_best_out(
    tmp_path: Path, ray_address: str
) -> None:
    shutil.copy(ROOT / "examples" / "torch_mlp.py", tmp_path)
    (tmp_path / "dying_torch.py").write_text(DYING)
    (tmp_path / "markers").mkdir()
    spec = (ROOT / "examples" / "torch_mlp.toml").read_text()
    spec = spec.replace('trainable = "torch_mlp:train"', 'trainable = "dying_torch:train"')
    spec = spec.replace("[fixed]", f'[fixed]\nmarkers = "{tmp_path / "markers"}"')
    (tmp_path / "study.toml").write_text(spec)
    db, run = tmp_path / "h.db", ("--db", "h.db", "--address", ray_address, "-q")
    coarse = run_cli("coarse", "study.toml", *run, "--trials", "3", "--epochs", "3", cwd=tmp_path)
    assert coarse.returncode == 0, coarse.stderr

    (lost,) = query(db, "SELECT trial_id FROM trials WHERE attempts = 2")
    epochs = query(db, "SELECT attempt, epoch FROM metrics WHERE name = 'val_acc' "
                       f"AND trial_id = {lost[0]} ORDER BY attempt, epoch")  # fmt: skip
    assert epochs == [(1, 1), (1, 2), (2, 3)]  # attempt 2 went on from epoch 2's checkpoint
    outcomes = query(db, f"SELECT outcome FROM attempts WHERE trial_id = {lost[0]} ORDER BY 1")
    assert outcomes == [("completed",), ("lost",)]
    assert query(db, f"SELECT epochs_run FROM trials WHERE trial_id = {lost[0]}") == [(3,)]
    last = query(db, "SELECT DISTINCT trial_id FROM checkpoints WHERE epoch = 3")
    assert len(last) == 3  # every trial keeps its last epoch (10 trials are kept by default)

    fine = run_cli("fine", "study.toml", *run, "--trials", "2", "--epochs", "3", cwd=tmp_path)
    assert fine.returncode == 0, fine.stderr
    shown = run_cli("show", "digits-torch", "--db", "h.db", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    files = query(db, "SELECT t.stage_id, c.uri FROM checkpoints c JOIN trials t USING (trial_id)")
    for stage in json.loads(shown.stdout)["stages"]:
        mine = [Path(uri) for s, uri in files if s == stage["id"]]
        assert stage["checkpoints"]["files"] == len(mine) > 0
        assert stage["checkpoints"]["bytes"] == sum(p.stat().st_size for p in mine)
        assert all(p.is_relative_to(tmp_path / "h.artifacts") for p in mine)

    best = run_cli("best", "study.toml", "--db", "h.db", "--out", "model", cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    about = json.loads((tmp_path / "model" / "params.json").read_text())
    assert about["stage"] == 2 and about["params"]["hidden"] == 64  # fine; fixed values too
    probs, labels = torch_mlp.predict(about["params"], checkpoint_dir=str(tmp_path / "model"))
    assert float((probs.argmax(axis=1) == labels).mean()) == pytest.approx(about["value"])
