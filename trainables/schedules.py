"""Learning-rate annealing, per epoch (``t`` = epochs already finished, 0 in epoch 1).

=========  ===================================================================
none       ``lr0``
step       ``lr0 * factor ** (t // every)`` (e.g. halve every 5 epochs)
exp        ``lr0 * exp(-k * t)``
inv_t      ``lr0 / (1 + k * t)``
plateau    multiply by ``factor`` when the validation accuracy has not improved
           for ``patience`` epochs in a row (then the count starts again)
=========  ===================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("none", "step", "exp", "inv_t", "plateau")


@dataclass
class Annealer:
    """Gives the learning rate of the current epoch; call ``end_epoch`` after each one."""

    lr0: float
    kind: str = "none"
    k: float = 0.1
    every: int = 5
    factor: float = 0.5
    patience: int = 1
    t: int = 0
    _plateau_lr: float = math.nan
    _best: float = -math.inf
    _bad: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(
                f"anneal: unknown schedule {self.kind!r}; expected one of {', '.join(SCHEDULES)}"
            )
        if self.every < 1 or self.patience < 1:
            raise ValueError(
                f"anneal: anneal_every and patience must be >= 1, "
                f"got anneal_every={self.every}, patience={self.patience}"
            )
        self._plateau_lr = self.lr0

    @property
    def lr(self) -> float:
        t = self.t
        if self.kind == "step":
            return self.lr0 * self.factor ** (t // self.every)
        if self.kind == "exp":
            return self.lr0 * math.exp(-self.k * t)
        if self.kind == "inv_t":
            return self.lr0 / (1 + self.k * t)
        if self.kind == "plateau":
            return self._plateau_lr
        return self.lr0

    def progress(self) -> dict[str, float]:
        """The state that changes while training (for checkpoints)."""
        return {"t": self.t, "plateau_lr": self._plateau_lr, "best": self._best, "bad": self._bad}

    def resume(self, progress: dict[str, float]) -> None:
        """Continue from a state saved by :meth:`progress`."""
        self.t, self._bad = int(progress["t"]), int(progress["bad"])
        self._plateau_lr, self._best = float(progress["plateau_lr"]), float(progress["best"])

    def end_epoch(self, val_acc: float) -> None:
        """Advance one epoch; ``val_acc`` drives the plateau rule."""
        self.t += 1
        if self.kind != "plateau":
            return
        if val_acc > self._best:
            self._best, self._bad = val_acc, 0
            return
        self._bad += 1
        if self._bad >= self.patience:
            self._plateau_lr *= self.factor
            self._bad = 0
