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
