"""Checkpoints of the numpy trainables: arrays in one ``.npz`` and the rest in JSON, never pickles.

A checkpoint directory holds ``model.npz`` (the weights; ``avg/<name>`` their running average
when ``avg_decay`` is on; ``opt/<name>/<key>`` the optimizer's state) and ``state.json`` (the
epoch, the optimizer's step counts, the annealer, the generator's state and the initial loss).
Everything needed to continue training exactly where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainables.models import Net, Params
from trainables.optim import Optimizer
from trainables.schedules import Annealer

MODEL = "model.npz"
STATE = "state.json"


class Average:
    """A decaying average of the weights, ``avg = decay * avg + (1 - decay) * w`` per step."""

    def __init__(self, params: Params, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"avg_decay: must be in (0, 1) (0 = off), got {decay}")
        self.decay = decay
        self.params = {name: value.copy() for name, value in params.items()}

    def update(self, params: Params) -> None:
        for name, value in params.items():
            avg = self.params[name]
            avg *= self.decay
            avg += (1.0 - self.decay) * value


@dataclass
class TrainState:
    """What a checkpoint saves and restores, besides the net's own weights."""

    optimizer: Optimizer
    annealer: Annealer
    rng: np.random.Generator
    average: Average | None
    initial_loss: float


def save(directory: str | Path, epoch: int, net: Net, state: TrainState) -> None:
    """Write epoch `epoch`'s checkpoint into `directory` (which must exist)."""
    path = Path(directory)
    arrays = dict(net.params)
    if state.average is not None:
        arrays.update({f"avg/{k}": v for k, v in state.average.params.items()})
    for name, slots in state.optimizer.slots.items():
        arrays.update({f"opt/{name}/{key}": value for key, value in slots.items()})
    np.savez(path / MODEL, allow_pickle=False, **arrays)
    meta = {
        "epoch": epoch,
        "initial_loss": state.initial_loss,
        "steps": state.optimizer.steps,
        "annealer": state.annealer.progress(),
        "rng": state.rng.bit_generator.state,
    }
    (path / STATE).write_text(json.dumps(meta, default=_plain))


def restore(directory: str | Path, net: Net, state: TrainState) -> int:
    """Load a checkpoint into `net` and `state`; returns the epoch it was made after."""
    path = Path(directory)
    meta = json.loads((path / STATE).read_text())
    with np.load(path / MODEL, allow_pickle=False) as arrays:
        for key in arrays.files:
            _put(key, np.array(arrays[key]), net, state)
    state.optimizer.steps = {k: int(v) for k, v in meta["steps"].items()}
    state.annealer.resume(meta["annealer"])
    state.rng.bit_generator.state = meta["rng"]
    state.initial_loss = float(meta["initial_loss"])
    return int(meta["epoch"])


def _put(key: str, value: np.ndarray, net: Net, state: TrainState) -> None:
    kind, _, rest = key.partition("/")
    if not rest:
        net.params[key] = value
    elif kind == "avg" and state.average is not None:
        state.average.params[rest] = value
    elif kind == "opt":
        name, _, slot = rest.partition("/")
        state.optimizer.slots.setdefault(name, {})[slot] = value


def load_weights(directory: str | Path, *, averaged: bool = False) -> Params:
    """The weights of a checkpoint (their running average when `averaged` and saved)."""
    with np.load(Path(directory) / MODEL, allow_pickle=False) as arrays:
        plain = {k: np.array(arrays[k]) for k in arrays.files if "/" not in k}
        avg = {k[4:]: np.array(arrays[k]) for k in arrays.files if k.startswith("avg/")}
    return avg if averaged and avg else plain


def checkpoint_epoch(directory: str | Path) -> int:
    """The epoch after which the checkpoint in `directory` was made."""
    return int(json.loads((Path(directory) / STATE).read_text())["epoch"])


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
