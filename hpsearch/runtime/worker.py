"""Running trials inside a worker: pure Python, shared by the Ray and in-process executors.

A worker turns each trial into events (plain tuples, cheap to pickle):
    ("start", trial_id, attempt, node_id)
    ("epoch", trial_id, attempt, epoch, {metric: float})
    ("end",   trial_id, attempt, status, error, seconds)   status: completed|failed|diverged
    ("lost",  trial_id, attempt, reason)            executor only: the worker died, retrying
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

Event = tuple[Any, ...]


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


def _ender(head: tuple[int, int], started: float):  # type: ignore[no-untyped-def]
    def end(status: str, error: str | None) -> Event:
        return ("end", *head, status, error, time.perf_counter() - started)

    return end


def run_trial(fn: Trainable, task: TrialTask, metric: str) -> Iterator[Event]:
    """Events for one trial after its start: its epochs, then exactly one 'end'."""
    head = (task.trial_id, task.attempt)
    started = time.perf_counter()
    epoch = 0
    end = _ender(head, started)
    try:
        for out in fn(dict(task.params), epochs=task.epochs, seed=task.seed):
            epoch += 1
            metrics = _as_metrics(out, epoch, metric)
            yield ("epoch", *head, epoch, metrics)
            bad = [f"{k}={v}" for k, v in metrics.items() if not math.isfinite(v)]
            if bad:
                yield end("diverged", f"{', '.join(bad)} at epoch {epoch}")
                return
            if epoch >= task.epochs:
                break
    except FloatingPointError as exc:  # the trainable's own "this run is hopeless"
        yield end("diverged", str(exc) or f"FloatingPointError at epoch {epoch + 1}")
        return
    except _TrialFailed as exc:
        yield end("failed", str(exc))
        return
    except Exception:
        yield end("failed", traceback.format_exc())
        return
    if epoch == 0:
        yield end("failed", "the trainable yielded no epochs")
    else:
        yield end("completed", None)


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
        buffer.append(("start", task.trial_id, task.attempt, node_id))
        for event in run_trial(fn, task, metric):
            buffer.append(event)
            if time.monotonic() - last_flush >= flush_seconds:
                yield buffer
                buffer = []
                last_flush = time.monotonic()
    if buffer:
        yield buffer
