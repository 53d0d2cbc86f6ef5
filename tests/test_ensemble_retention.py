"""Ensemble scoring and checkpoint retention: pure functions on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from hpsearch.ensemble import score
from hpsearch.errors import HpsearchError
from hpsearch.retention import Kept, to_keep
from storage import Mode


def one_hot(rows: list[int], classes: int = 3) -> np.ndarray:
    return np.eye(classes)[rows] * 0.6 + 0.4 / classes


def test_averaging_three_members_that_err_on_different_examples() -> None:
    labels = np.array([0, 1, 2, 0])
    members = [
        (1, 5, one_hot([0, 1, 2, 1])),  # wrong on the last example
        (2, 5, one_hot([0, 1, 0, 0])),  # wrong on the third
        (3, 4, one_hot([2, 1, 2, 0])),  # wrong on the first
    ]
    result = score(members, labels)
    assert [m.accuracy for m in result.members] == [0.75, 0.75, 0.75]
    assert result.accuracy == 1.0  # every example has a 2-of-3 majority
    assert result.best_member_accuracy == 0.75 and result.gain == pytest.approx(0.25)


def test_members_of_different_shapes_are_refused() -> None:
    with pytest.raises(HpsearchError, match="members predict different shapes"):
        score([(1, 1, one_hot([0, 1])), (2, 1, one_hot([0, 1, 2]))], np.array([0, 1]))
    with pytest.raises(HpsearchError, match="no members"):
        score([], np.array([0]))


def ckpt(trial: int, epoch: int, value: float | None, attempt: int = 1) -> Kept:
    return Kept(trial, attempt, epoch, value)


def test_best_trials_keep_their_best_epochs_and_last_others_keep_none() -> None:
    checkpoints = [ckpt(t, e, v) for t, vals in {1: [0.5, 0.9, 0.7], 2: [0.6, 0.8, 0.85],
                                                  3: [0.1, 0.2, 0.3]}.items()
                   for e, v in enumerate(vals, start=1)]  # fmt: skip
    kept = to_keep(checkpoints, {1: 0.9, 2: 0.85, 3: 0.3}, Mode.MAX, keep_trials=2, keep_epochs=1)
    assert kept == {ckpt(1, 2, 0.9), ckpt(1, 3, 0.7), ckpt(2, 3, 0.85)}


def test_a_running_trial_keeps_its_latest_checkpoint_and_min_mode_ranks_low_first() -> None:
    checkpoints = [ckpt(1, 1, 0.4), ckpt(1, 2, 0.3), ckpt(2, 1, 0.9), ckpt(2, 1, 0.8, attempt=2),
                   ckpt(3, 1, 0.2), ckpt(3, 2, 0.1)]  # fmt: skip
    kept = to_keep(checkpoints, {1: 0.3, 3: 0.1}, Mode.MIN, keep_trials=1, keep_epochs=2)
    assert kept == {ckpt(2, 1, 0.8, attempt=2), ckpt(3, 1, 0.2), ckpt(3, 2, 0.1)}
