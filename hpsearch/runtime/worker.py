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


MAX_NAME = 200  # the metric name column's length (PostgreSQL enforces it)


def storable(text: str) -> str:
    """`text` as every database stores it: lone surrogates and NUL escaped (`\\ud800`)."""
    if "\x00" not in text:
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:
            pass
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _metric_name(name: object, epoch: int) -> str:
    """The metric's name, refused (the trial fails) when no database could store it."""
    text = str(name)
    shown = repr(text if len(text) <= 60 else text[:60] + "...")
    if storable(text) != text:
        why = "is not valid UTF-8 (a lone surrogate: decode its bytes first)"
        if "\x00" in text:
            why = "contains a NUL character"
        raise _TrialFailed(f"epoch {epoch}: metric name {shown} {why}")
    if len(text) > MAX_NAME:
        raise _TrialFailed(
            f"epoch {epoch}: metric name {shown} has {len(text)} characters (at most {MAX_NAME})"
        )
    return text


def _metric_value(name: str, value: object, epoch: int) -> float:
    """A real number as a float; non-finite values are kept (the trial then diverges)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise _TrialFailed(f"epoch {epoch}: metric {name!r} is {value!r}, not a number")
    try:
        return float(value)
    except (OverflowError, ValueError, TypeError) as exc:  # e.g. 10**400, a broken __float__
        raise _TrialFailed(f"epoch {epoch}: metric {name!r} is not a float ({exc})") from None


def _as_metrics(out: object, epoch: int, metric: str) -> dict[str, float]:
    if not isinstance(out, dict):
        raise _TrialFailed(f"epoch {epoch} yielded {type(out).__name__}, not a dict of metrics")
    metrics: dict[str, float] = {}
    for key, value in out.items():
        name = _metric_name(key, epoch)
        metrics[name] = _metric_value(name, value, epoch)
    if metric not in metrics:
        got = ", ".join(sorted(metrics)) or "nothing"
        raise _TrialFailed(f"epoch {epoch}: no value for the spec's metric {metric!r} (got {got})")
    return metrics


def run_trial(fn: Trainable, task: TrialTask, metric: str) -> Iterator[EpochDone | Ended]:
    """Events for one trial after its start: its epochs, then exactly one `Ended`."""
    started = time.perf_counter()
    epoch = 0

    def end(status: Status, error: str | None) -> Ended:
        seconds = time.perf_counter() - started
        return Ended(task.trial_id, task.attempt, status, error and storable(error), seconds)

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
    """Run trials one after another, yielding their events in lists at most every flush_seconds.

    Buffering delays the report, not the decision: divergence still stops a trial at its epoch.
    """
    buffer: list[Event] = []
    last_flush = time.monotonic()
    for task in tasks:
        buffer.append(Started(task.trial_id, task.attempt, node_id))
        for event in run_trial(fn, task, metric):
            buffer.append(event)
            if time.monotonic() - last_flush >= flush_seconds:
                yield buffer
                buffer = []
                last_flush = time.monotonic()
    if buffer:
        yield buffer
