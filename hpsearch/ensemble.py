"""Model ensembles (the recipe's last step): average the members' predicted class probabilities.

Pure: records and arrays in, members and accuracies out. Which checkpoints are members (the
best trials', one configuration's with new seeds, several epochs of one trial) is chosen here
from records; reading them and calling `predict` is `hpsearch.ensemble_run`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from hpsearch.errors import HpsearchError
from storage import CheckpointRecord, Mode, TrialRecord


class EnsembleKind(StrEnum):
    TOP = "top"  # the best K trials of a stage, each at its chosen checkpoint
    SEEDS = "seeds"  # the best configuration trained again with K new seeds
    CHECKPOINTS = "checkpoints"  # K checkpoints (epochs) of the best trial


class Pick(StrEnum):
    """Which epochs of one trial a `checkpoints` ensemble takes."""

    BEST = "best"  # the K kept epochs with the best metric
    LAST = "last"  # the K latest kept epochs


SPLITS = ("val", "test")


@dataclass(frozen=True)
class Member:
    """One trial's checkpoint at one epoch (its files), as an ensemble member."""

    trial: TrialRecord
    epoch: int
    files: tuple[CheckpointRecord, ...]


def checkpoints_by_epoch(
    files: Sequence[CheckpointRecord],
) -> dict[int, tuple[CheckpointRecord, ...]]:
    """A trial's kept checkpoints, {epoch: files}; of an epoch saved by several attempts
    (a retry that ran it again), the latest attempt's."""
    latest: dict[int, int] = {}
    for f in files:
        latest[f.epoch] = max(latest.get(f.epoch, f.attempt), f.attempt)
    grouped: dict[int, tuple[CheckpointRecord, ...]] = {}
    for f in files:
        if f.attempt == latest[f.epoch]:
            grouped[f.epoch] = (*grouped.get(f.epoch, ()), f)
    return dict(sorted(grouped.items()))


def chosen(
    trial: TrialRecord,
    files: Sequence[CheckpointRecord],
    values: dict[int, float | None],
    mode: Mode,
) -> Member | None:
    """The checkpoint that stands for a trial, as `best --out` picks it: its kept epoch with
    the best metric `values[epoch]` (ties: the earliest), else its latest kept epoch."""
    epochs = checkpoints_by_epoch(files)
    if not epochs:
        return None
    valued = [e for e in epochs if values.get(e) is not None]
    best = mode.best_first(valued, lambda e: values[e] or 0.0)
    epoch = best[0] if best else max(epochs)
    return Member(trial, epoch, epochs[epoch])


def top_members(
    ranked: Sequence[TrialRecord],
    files: dict[int, list[CheckpointRecord]],
    values: dict[int, dict[int, float | None]],
    mode: Mode,
    size: int,
) -> list[Member]:
    """The best `size` trials (ranked best first) that kept a checkpoint, one member each;
    `files` and `values` ({epoch: metric}) by trial id."""
    members = []
    for trial in ranked:
        member = chosen(trial, files.get(trial.trial_id, []), values.get(trial.trial_id, {}), mode)
        if member is not None:
            members.append(member)
        if len(members) == size:
            break
    return members


def epoch_members(
    trial: TrialRecord,
    files: Sequence[CheckpointRecord],
    values: dict[int, float | None],
    mode: Mode,
    size: int,
    pick: Pick,
) -> list[Member]:
    """`size` kept checkpoints of one trial: its best epochs by `values`, or its last ones."""
    epochs = checkpoints_by_epoch(files)
    if pick is Pick.LAST:
        order = sorted(epochs, reverse=True)
    else:
        valued = [e for e in epochs if values.get(e) is not None]
        order = mode.best_first(sorted(valued, reverse=True), lambda e: values[e] or 0.0)
    return [Member(trial, e, epochs[e]) for e in sorted(order[:size])]


def checked_prediction(out: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """`predict`'s (probabilities n x classes, labels n), refused with one line naming `where`
    (the predict function, trial and epoch) and what is wrong."""
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise HpsearchError(
            f"{where}: returned {type(out).__name__}, not (probabilities, labels): return two "
            "numpy arrays, n x classes and n"
        )
    try:
        probs = np.asarray(out[0], dtype=np.float64)
        labels = np.asarray(out[1])
    except (TypeError, ValueError) as exc:
        raise HpsearchError(f"{where}: returned something not numeric: {exc}") from None
    if probs.ndim != 2 or labels.ndim != 1 or len(probs) != len(labels) or not len(labels):
        raise HpsearchError(
            f"{where}: returned probabilities of shape {probs.shape} and labels of shape "
            f"{labels.shape}: expected (n, classes) and (n,) with n > 0"
        )
    if not np.isfinite(probs).all():
        raise HpsearchError(f"{where}: returned probabilities that are NaN or infinite")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise HpsearchError(
            f"{where}: labels must be class indices (integers >= 0), got {labels.dtype}"
        )
    if labels.max() >= probs.shape[1]:
        raise HpsearchError(
            f"{where}: label {labels.max()} is not a column of the {probs.shape[1]}-class "
            "probabilities"
        )
    return probs, labels


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
