"""Running trials inside a worker: pure Python, shared by the Ray and in-process executors.

A worker turns each trial into events, small frozen records with slots (cheap to pickle):
`Started`, then `EpochDone` per epoch, then exactly one `Ended` (completed, failed or diverged).
The executor adds `Lost` when a worker died and the attempt will run again.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Real
from typing import Any

from hpsearch.registry import Trainable
from storage import Status


@dataclass(frozen=True, slots=True)
class Started:
    trial_id: int
    attempt: int
    node_id: str | None


@dataclass(frozen=True, slots=True)
class EpochDone:
    trial_id: int
    attempt: int
    epoch: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class Ended:
    trial_id: int
    attempt: int
    status: Status  # a final status
    error: str | None
    seconds: float


@dataclass(frozen=True, slots=True)
class Lost:
    """The attempt's worker or node died; the trial runs again as a new attempt."""

    trial_id: int
    attempt: int
    reason: str


Event = Started | EpochDone | Ended | Lost


@dataclass(frozen=True)
class TrialTask:
    trial_id: int
    attempt: int
    params: dict[str, Any]
    seed: int
    epochs: int


class _TrialFailed(Exception):
    """The trainable broke the API contract; the message says how."""


def _as_metrics(out: object, epoch: int, metric: str) -> dict[str, float]:
    if not isinstance(out, dict):
        raise _TrialFailed(f"epoch {epoch} yielded {type(out).__name__}, not a dict of metrics")
    metrics: dict[str, float] = {}
    for name, value in out.items():
        if isinstance(value, bool) or not isinstance(value, Real):
            raise _TrialFailed(f"epoch {epoch}: metric {name!r} is {value!r}, not a number")
        metrics[str(name)] = float(value)
    if metric not in metrics:
        got = ", ".join(sorted(metrics)) or "nothing"
        raise _TrialFailed(f"epoch {epoch}: no value for the spec's metric {metric!r} (got {got})")
    return metrics


def run_trial(fn: Trainable, task: TrialTask, metric: str) -> Iterator[EpochDone | Ended]:
    """Events for one trial after its start: its epochs, then exactly one `Ended`."""
    started = time.perf_counter()
    epoch = 0

    def end(status: Status, error: str | None) -> Ended:
        return Ended(task.trial_id, task.attempt, status, error, time.perf_counter() - started)

    try:
        for out in fn(dict(task.params), epochs=task.epochs, seed=task.seed):
            epoch += 1
            metrics = _as_metrics(out, epoch, metric)
            yield EpochDone(task.trial_id, task.attempt, epoch, metrics)
            bad = [f"{k}={v}" for k, v in metrics.items() if not math.isfinite(v)]
            if bad:
                yield end(Status.DIVERGED, f"{', '.join(bad)} at epoch {epoch}")
                return
            if epoch >= task.epochs:
                break
    except FloatingPointError as exc:  # the trainable's own "this run is hopeless"
        yield end(Status.DIVERGED, str(exc) or f"FloatingPointError at epoch {epoch + 1}")
        return
    except _TrialFailed as exc:
        yield end(Status.FAILED, str(exc))
        return
    except Exception:
        yield end(Status.FAILED, traceback.format_exc())
        return
    if epoch == 0:
        yield end(Status.FAILED, "the trainable yielded no epochs")
    else:
        yield end(Status.COMPLETED, None)


def run_bundle(
    fn: Trainable,
    tasks: list[TrialTask],
    metric: str,
    node_id: str | None,
    flush_seconds: float,
) -> Iterator[list[Event]]:
    """Run trials one after another, yielding their events in lists at most every flush_seconds
    within a trial, and at each trial's start (with what the previous trial left).

    Buffering delays the report, not the decision: divergence still stops a trial at its epoch.
    The flush at a trial's start means a finished trial's events never wait behind a trial
    that hangs, and the driver times each trial from its start (its time limit).
    """
    buffer: list[Event] = []
    for task in tasks:
        buffer.append(Started(task.trial_id, task.attempt, node_id))
        yield buffer
        buffer = []
        last_flush = time.monotonic()
        for event in run_trial(fn, task, metric):
            buffer.append(event)
            if time.monotonic() - last_flush >= flush_seconds:
                yield buffer
                buffer = []
                last_flush = time.monotonic()
    if buffer:
        yield buffer
