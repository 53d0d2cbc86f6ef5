"""Asynchronous successive halving (ASHA, Li et al. 2018) inside a stage: pure, no Ray.

A stage with `schedule = "asha"` has rungs at `grace * eta**k` epochs below its epochs. A trial
that reaches a rung asks the stage's `RungBoard`; it goes on only if its value is among the
best `max(1, n // eta)` of the n values recorded at that rung so far (its own included; ties
go on: only strictly better values count against it). Nobody waits for a rung to fill: early
arrivals are judged against fewer values. A trial cut at a rung ends `stopped`.

The board is used where the epoch happens: directly by the in-process executor, behind a Ray
actor by the Ray executor (hpsearch.runtime.executor). Reports are idempotent per
(trial, rung), so a retried attempt gets the decision its first attempt got; on resume the
board is rebuilt from the stage's stored metrics (`RungBoard.restore`).

`at_equal_fidelity` ranks a stage with stopped trials at one common epoch (README, "ASHA").

With `budget = "epochs"` (the default under ASHA) the epochs ASHA saves buy more trials: the
stage draws trials until `trials x epochs` epochs are spent (`EpochBudget`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from storage import Mode, Status, TrialRecord

SCHEDULES = ("none", "asha")
BUDGETS = ("epochs", "trials")
MetricRow = tuple[int, int, int, float | None]  # trial_id, attempt, epoch, value


@dataclass(frozen=True)
class Schedule:
    """How a stage spends epochs: `none` runs every trial to the end, `asha` cuts at rungs."""

    kind: str = "none"
    eta: int = 3  # keep the top 1/eta at each rung
    grace: int = 1  # epochs before the first rung
    budget: str = "epochs"  # "epochs": draw trials until trials x epochs are spent

    @property
    def active(self) -> bool:
        return self.kind == "asha"

    def epoch_budget(self, trials: int, epochs: int) -> int | None:
        """The epochs a stage of `trials` x `epochs` may spend if it draws trials until they
        are spent (ASHA with rungs and `budget = "epochs"`); None: it runs `trials` trials."""
        if self.budget != "epochs" or not self.rungs(epochs):
            return None
        return trials * epochs

    def rungs(self, epochs: int) -> tuple[int, ...]:
        """Rung epochs `grace * eta**k` below `epochs` (none when the schedule is off)."""
        if not self.active:
            return ()
        out, rung = [], self.grace
        while rung < epochs:
            out.append(rung)
            rung *= self.eta
        return tuple(out)


class RungBoard:
    """The values recorded at each rung of one stage, and the decisions made on them."""

    def __init__(self, rungs: Iterable[int], eta: int, mode: str, metric: str) -> None:
        self.rungs = tuple(sorted(set(rungs)))
        self.eta = eta
        self.mode = Mode(mode)
        self.metric = metric
        self._values: dict[int, dict[int, float]] = {r: {} for r in self.rungs}
        self._decisions: dict[tuple[int, int], str | None] = {}

    def report(self, trial_id: int, epoch: int, value: float) -> str | None:
        """None: the trial goes on; else why it stops here. Asked again for the same trial
        and rung (a retried attempt), the first answer is given again."""
        if epoch not in self._values:
            return None
        key = (trial_id, epoch)
        if key not in self._decisions:
            recorded = self._values[epoch]
            recorded.setdefault(trial_id, value)  # the first attempt's value counts
            self._decisions[key] = self._decide(epoch, recorded[trial_id])
        return self._decisions[key]

    def restore(
        self, trial_id: int, epoch: int, value: float, *, known: bool, decision: str | None
    ) -> None:
        """A value stored before a resume, and when `known` the decision it got (None: went
        on, a reason: stopped); unknown, it is decided when the trial asks again."""
        if epoch not in self._values:
            return
        self._values[epoch].setdefault(trial_id, value)
        if known:
            self._decisions[(trial_id, epoch)] = decision

    def values(self, epoch: int) -> dict[int, float]:
        return dict(self._values.get(epoch, {}))

    def _decide(self, epoch: int, value: float) -> str | None:
        values = list(self._values[epoch].values())
        keep = max(1, len(values) // self.eta)
        better = sum(self.mode.better(v, value) for v in values)
        if better < keep:
            return None
        threshold = self.mode.best_first(values, float)[keep - 1]
        return (
            f"stopped at epoch {epoch}: {self.metric} {value:.4g}, "
            f"rung's top 1/{self.eta} starts at {threshold:.4g}"
        )


@dataclass
class EpochBudget:
    """How many more trials a stage with an epoch budget draws.

    A trial that ended is charged the epochs its last attempt ran (at least one, so a stage
    whose trials fail at once still ends); a trial under way is expected to spend as much as
    the ended ones did on average (a full-length trial before any ended), or what it ran
    already if more. The stage draws half the trials the expected total leaves room for,
    then judges again: the first trials to end are mostly those cut at the first rung, so the
    average so far underestimates what later ones spend, and drawing all the room at once
    overshot the budget by up to 190% in the search-quality benchmark. It ends near the
    budget: over by what ASHA lets the last trials run, under by less than one average trial.
    """

    total: int  # epochs the stage may spend
    epochs: int  # a trial's full length
    ended: int = 0
    ended_epochs: int = 0
    pending: int = 0  # trials drawn that have not ended
    running: dict[int, int] = field(default_factory=dict)  # epochs run by trials under way

    @property
    def spent(self) -> int:
        return self.ended_epochs + sum(self.running.values())

    def room(self) -> int:
        """Trials the expected spending leaves room for."""
        mean = self.ended_epochs / self.ended if self.ended else float(self.epochs)
        unreported = max(0, self.pending - len(self.running))
        expected = sum(max(e, mean) for e in self.running.values()) + unreported * mean
        return max(0, math.floor((self.total - self.ended_epochs - expected) / mean))

    def trials_left(self) -> int:
        """Trials to draw now: half the room (at least one while there is room)."""
        return math.ceil(self.room() / 2)

    def drawn(self, trials: int) -> None:
        self.pending += trials

    def ran(self, trial_id: int, epochs: int) -> None:
        """The trial's current attempt has run `epochs` epochs."""
        self.running[trial_id] = epochs

    def end(self, trial_id: int, epochs: int) -> None:
        self.running.pop(trial_id, None)
        self.pending -= 1
        self.ended += 1
        self.ended_epochs += max(1, epochs)


def rebuild(
    board: RungBoard, trials: Sequence[TrialRecord], rows: Iterable[MetricRow]
) -> RungBoard:
    """The board of a resumed stage from its stored (trial_id, attempt, epoch, value) rows of
    the metric: a rung value counts once per trial (its earliest attempt's); the trial went
    on past a rung if any row lies beyond it, and stopped there if it ended `stopped`."""
    status = {t.trial_id: t for t in trials}
    first: dict[tuple[int, int], tuple[int, float]] = {}
    last_epoch: dict[int, int] = {}
    for trial_id, attempt, epoch, value in rows:
        last_epoch[trial_id] = max(last_epoch.get(trial_id, 0), epoch)
        if epoch in board.rungs and value is not None and math.isfinite(value):
            known = first.get((trial_id, epoch))
            if known is None or attempt < known[0]:
                first[(trial_id, epoch)] = (attempt, value)
    for (trial_id, epoch), (_, value) in first.items():
        trial = status.get(trial_id)
        went_on = last_epoch.get(trial_id, 0) > epoch
        if went_on or (trial is not None and trial.status == Status.COMPLETED):
            board.restore(trial_id, epoch, value, known=True, decision=None)
        elif trial is not None and trial.status == Status.STOPPED and trial.epochs_run == epoch:
            reason = trial.error or f"stopped at epoch {epoch}"
            board.restore(trial_id, epoch, value, known=True, decision=reason)
        else:
            board.restore(trial_id, epoch, value, known=False, decision=None)
    return board


def fidelity(trials: Sequence[TrialRecord], epochs: int, top: int) -> int | None:
    """The epoch a stage with stopped trials is ranked at: the highest level (a rung where
    trials stopped, or the stage's epochs) that at least `top` trials reached (completed or
    stopped there or later); fewer reached any level: the lowest. None: nothing stopped."""
    stopped = [t for t in trials if t.status == Status.STOPPED]
    if not stopped:
        return None
    levels = sorted({t.epochs_run for t in stopped if t.epochs_run > 0} | {epochs})
    for level in reversed(levels):
        if sum(_reached(t, level, epochs) for t in trials) >= top:
            return level
    return levels[0]


def _reached(trial: TrialRecord, level: int, epochs: int) -> bool:
    if trial.status == Status.COMPLETED:
        return True
    return trial.status == Status.STOPPED and trial.epochs_run >= level and level < epochs


def at_equal_fidelity(
    trials: Sequence[TrialRecord],
    level: int,
    epochs: int,
    mode: str,
    rows: Iterable[MetricRow],
) -> list[TrialRecord]:
    """The trials as ranked at epoch `level`: those that reached it become completed trials
    whose best value is their best up to that epoch (from their last attempt's metric rows,
    (trial_id, attempt, epoch, value)); the others keep their status (stopped earlier: not
    ranked). At the stage's epochs the trials are returned unchanged."""
    if level >= epochs:
        return list(trials)
    last = {t.trial_id: t.attempts for t in trials}
    better = Mode(mode).better
    best: dict[int, tuple[float, int]] = {}
    for trial_id, attempt, epoch, value in rows:
        if attempt != last.get(trial_id) or epoch > level or value is None:
            continue
        if not math.isfinite(value):
            continue
        known = best.get(trial_id)
        if known is None or better(value, known[0]):
            best[trial_id] = (value, epoch)
    out = []
    for t in trials:
        until = best.get(t.trial_id)
        if until is not None and _reached(t, level, epochs):
            out.append(
                replace(t, status=Status.COMPLETED, best_value=until[0], best_epoch=until[1])
            )
        else:
            out.append(t)
    return out


__all__ = [
    "BUDGETS",
    "SCHEDULES",
    "EpochBudget",
    "RungBoard",
    "Schedule",
    "at_equal_fidelity",
    "fidelity",
    "rebuild",
]
