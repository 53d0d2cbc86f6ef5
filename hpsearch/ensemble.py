"""Model ensembles (the recipe's last step): average the members' predicted class probabilities.

Pure: arrays in, accuracies out. Where the members come from (the best trials' checkpoints,
one configuration with new seeds, several checkpoints of one trial) is decided elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hpsearch.errors import HpsearchError


@dataclass(frozen=True)
class MemberScore:
    trial_id: int
    epoch: int
    accuracy: float


@dataclass(frozen=True)
class EnsembleScore:
    members: list[MemberScore]
    accuracy: float

    @property
    def best_member_accuracy(self) -> float:
        return max(m.accuracy for m in self.members)

    @property
    def gain(self) -> float:
        """Accuracy of the ensemble minus that of its best member."""
        return self.accuracy - self.best_member_accuracy


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(axis=1) == labels).mean())


def score(members: Sequence[tuple[int, int, np.ndarray]], labels: np.ndarray) -> EnsembleScore:
    """Each member's accuracy and the accuracy of their averaged probabilities.

    `members` are (trial_id, epoch, probabilities n x classes); every member must predict
    the same n examples and classes.
    """
    if not members:
        raise HpsearchError("ensemble: no members to combine")
    shapes = {probs.shape for _, _, probs in members}
    if len(shapes) != 1 or next(iter(shapes))[0] != len(labels):
        raise HpsearchError(
            f"ensemble: members predict different shapes {sorted(shapes)} for "
            f"{len(labels)} labels: predict() must return (examples x classes) for one split"
        )
    scores = [MemberScore(t, e, accuracy(p, labels)) for t, e, p in members]
    mean = np.mean([p for _, _, p in members], axis=0)
    return EnsembleScore(scores, accuracy(mean, labels))
