"""Ensemble scoring and checkpoint retention: pure functions on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from hpsearch.ensemble import Pick, checked_prediction, chosen, epoch_members, score, top_members
from hpsearch.errors import HpsearchError
from hpsearch.retention import Kept, to_keep
from storage import CheckpointRecord, Mode, TrialRecord


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


def test_a_running_trial_keeps_its_best_epochs_so_far_and_latest_min_mode_ranks_low_first() -> None:
    checkpoints = [ckpt(1, 1, 0.4), ckpt(1, 2, 0.3), ckpt(2, 1, 0.9), ckpt(2, 2, 0.2),
                   ckpt(2, 3, 0.7), ckpt(2, 3, 0.8, attempt=2), ckpt(3, 1, 0.2),
                   ckpt(3, 2, 0.1)]  # fmt: skip
    kept = to_keep(checkpoints, {1: 0.3, 3: 0.1}, Mode.MIN, keep_trials=1, keep_epochs=1)
    # running trial 2: its best epoch so far (0.2) and its latest; finished: 3 leads, 1 none
    assert kept == {ckpt(2, 2, 0.2), ckpt(2, 3, 0.8, attempt=2), ckpt(3, 2, 0.1)}


def trial(trial_id: int, best_epoch: int, attempts: int = 1) -> TrialRecord:
    return TrialRecord(trial_id, 1, trial_id, "completed", 0, attempts, {}, 0.5, best_epoch, 3)


def files(trial_id: int, *epochs: int, attempt: int = 1) -> list[CheckpointRecord]:
    return [CheckpointRecord(trial_id, attempt, e, f"/a/{trial_id}/{attempt}/{e}/{name}", 1, "0")
            for e in epochs for name in ("model.npz", "state.json")]  # fmt: skip


def test_members_are_chosen_checkpoints_best_trials_first() -> None:
    kept = {1: files(1, 2, 3), 2: files(2, 3, 4), 3: [], 4: files(4, 1)}
    values = {1: {2: 0.9, 3: 0.8}, 2: {3: 0.7, 4: 0.7}, 4: {1: None}}
    ranked = [trial(3, 2), trial(1, 2), trial(2, 1), trial(4, 1)]  # best first
    members = top_members(ranked, kept, values, Mode.MAX, 3)
    # trial 3 kept none; 2's tie goes to the earliest epoch; 4 has no value: its latest
    assert [(m.trial.trial_id, m.epoch) for m in members] == [(1, 2), (2, 3), (4, 1)]
    assert [f.name for f in members[0].files] == ["model.npz", "state.json"]
    retried = files(5, 1, 2) + files(5, 2, 3, attempt=2)
    member = chosen(trial(5, 2, attempts=2), retried, {2: 0.5, 3: 0.4}, Mode.MAX)
    assert member is not None and member.epoch == 2
    assert {f.attempt for f in member.files} == {2}  # the epoch as the retry ran it again


def test_checkpoint_members_are_the_best_or_last_epochs_of_one_trial() -> None:
    values = {1: 0.5, 2: 0.9, 3: 0.7, 4: None, 5: 0.8}
    kept = files(1, 1, 2, 3, 4, 5)
    best = epoch_members(trial(1, 2), kept, values, Mode.MAX, 3, Pick.BEST)
    assert [m.epoch for m in best] == [2, 3, 5]  # NaN epoch 4 never counts as best
    last = epoch_members(trial(1, 2), kept, values, Mode.MAX, 2, Pick.LAST)
    assert [m.epoch for m in last] == [4, 5]
    low = epoch_members(trial(1, 2), kept, values, Mode.MIN, 1, Pick.BEST)
    assert [m.epoch for m in low] == [1]


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (np.zeros((3, 2)), "returned ndarray, not (probabilities, labels)"),
        ((np.zeros(3), np.zeros(3, int)), "probabilities of shape (3,) and labels of shape (3,)"),
        ((np.full((2, 2), np.nan), np.zeros(2, int)), "NaN or infinite"),
        ((np.zeros((2, 2)), np.array([0.0, 1.0])), "labels must be class indices"),
        ((np.zeros((2, 2)), np.array([0, 2])), "label 2 is not a column of the 2-class"),
    ],
)
def test_predictions_of_the_wrong_form_are_refused_in_one_line(out: object, message: str) -> None:
    with pytest.raises(HpsearchError) as info:
        checked_prediction(out, "predict 'm:p' on trial 1")
    assert message in str(info.value) and str(info.value).startswith("predict 'm:p' on trial 1")
    probs, labels = checked_prediction(([[0.2, 0.8]], [1]), "p")
    assert probs.shape == (1, 2) and labels.tolist() == [1]
