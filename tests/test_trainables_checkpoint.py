"""Checkpoints, predictions, weight averages and first-layer images of the built-in models.

Plain Python, as any user would call a trainable: no hpsearch, no Ray.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from trainables import mlp, softmax, svm
from trainables.checkpoint import MODEL, STATE, checkpoint_epoch

PARAMS = {"hidden": 16, "lr": 3e-3, "update": "adam", "dropout": 0.2, "anneal": "plateau",
          "avg_decay": 0.99, "batch": 64}  # fmt: skip


def run(params: dict, epochs: int, **kw: str) -> list[dict[str, float]]:
    return list(mlp.train(params, epochs=epochs, seed=3, **kw))


def test_a_restored_run_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    every = tmp_path / "every"
    every.mkdir()
    kept = tmp_path / "epoch2"
    straight = []
    for epoch, metrics in enumerate(mlp.train(PARAMS, epochs=4, seed=3,
                                              checkpoint_dir=str(every)), start=1):  # fmt: skip
        straight.append(metrics)
        assert checkpoint_epoch(every) == epoch  # written before the epoch is yielded
        if epoch == 2:
            shutil.copytree(every, kept)
    resumed = run(PARAMS, 4, restore_dir=str(kept))
    assert len(resumed) == 2  # epochs 3 and 4 only
    for a, b in zip(straight[2:], resumed, strict=True):
        for name in ("train_loss", "val_acc", "val_loss", "val_acc_avg", "lr"):
            assert a[name] == pytest.approx(b[name], rel=1e-9, abs=1e-12), name


def test_checkpoints_are_arrays_and_json_never_pickles(tmp_path: Path) -> None:
    run(PARAMS, 1, checkpoint_dir=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MODEL, STATE])
    with np.load(tmp_path / MODEL, allow_pickle=False) as arrays:
        assert {"W1", "b1", "W2", "b2", "avg/W1", "opt/W1/m"} <= set(arrays.files)
        assert all(arrays[k].dtype != object for k in arrays.files)
    assert json.loads((tmp_path / STATE).read_text())["epoch"] == 1


def test_predict_gives_probabilities_that_score_the_reported_accuracy(tmp_path: Path) -> None:
    params = {k: v for k, v in PARAMS.items() if k != "avg_decay"}
    last = run(params, 3, checkpoint_dir=str(tmp_path))[-1]
    probs, labels = mlp.predict(params, checkpoint_dir=str(tmp_path), split="val")
    assert probs.shape == (len(labels), 10)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert float((probs.argmax(axis=1) == labels).mean()) == pytest.approx(last["val_acc"])
    test_probs, test_labels = mlp.predict(params, checkpoint_dir=str(tmp_path), split="test")
    assert len(test_labels) == len(test_probs) > 0
    with pytest.raises(ValueError, match="split: expected one of train, val, test"):
        mlp.predict(params, checkpoint_dir=str(tmp_path), split="holdout")


def test_averaged_weights_are_reported_and_predicted(tmp_path: Path) -> None:
    last = run(PARAMS, 3, checkpoint_dir=str(tmp_path))[-1]
    assert last["val_acc_avg"] != last["val_acc"] or last["val_loss_avg"] != last["val_loss"]
    probs, labels = mlp.predict(PARAMS, checkpoint_dir=str(tmp_path))
    assert float((probs.argmax(axis=1) == labels).mean()) == pytest.approx(last["val_acc_avg"])
    with pytest.raises(ValueError, match="avg_decay: must be in"):
        run({**PARAMS, "avg_decay": 1.5}, 1)


@pytest.mark.parametrize(("module", "units"), [(mlp, 16), (softmax, 10), (svm, 10)])
def test_first_layer_is_one_image_per_unit(module: object, units: int, tmp_path: Path) -> None:
    params = {"hidden": 16} if module is mlp else {}
    list(module.train(params, epochs=1, seed=0, checkpoint_dir=str(tmp_path)))  # type: ignore[attr-defined]
    images = module.first_layer(params, checkpoint_dir=str(tmp_path))  # type: ignore[attr-defined]
    assert images.shape == (units, 8, 8)
    with np.load(tmp_path / MODEL, allow_pickle=False) as arrays:
        first = arrays["W1" if module is mlp else "W"]
    assert np.array_equal(images[0], first[:, 0].reshape(8, 8))


def test_non_image_data_has_no_first_layer_images(tmp_path: Path) -> None:
    params = {"data": "synthetic", "rows": 600, "features": 20, "hidden": 8}
    run(params, 1, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not images"):
        mlp.first_layer(params, checkpoint_dir=str(tmp_path))
