"""Running trials inside a worker: pure Python, shared by the Ray and in-process executors.

A worker turns each trial into events, small frozen records with slots (cheap to pickle):
`Started`, then `EpochDone` per epoch, then exactly one `Ended` (completed, failed, diverged,
or stopped: cut at an ASHA rung by the stage's rung board).
The executor adds `Lost` when a worker died and the attempt will run again.

Checkpoints: a trainable that accepts `checkpoint_dir` gets an empty directory per attempt; the
files in it after it yields epoch e are epoch e's checkpoint, sent at once as `Checkpointed`
(the buffer holding it is flushed, never held). Given a checkpoint to restore (`TrialTask.
restore`) and a trainable that accepts `restore_dir`, the files are written to a fresh directory
and the trainable continues after `restore_epoch`; otherwise it starts at epoch 1.
"""

from __future__ import annotations

import math
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any, Protocol

from hpsearch.first_layer import SCORE_METRIC, checkpoint_score, first_layer_of
from hpsearch.registry import CHECKPOINT_DIR, RESTORE_DIR, Trainable, checkpoint_keywords
from storage import Status


@dataclass(frozen=True, slots=True)
class Started:
    trial_id: int
    attempt: int
    node_id: str | None
    resumed_after: int = 0  # the restored checkpoint's epoch; 0: the attempt starts at epoch 1


@dataclass(frozen=True, slots=True)
class EpochDone:
    trial_id: int
    attempt: int
    epoch: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class Checkpointed:
    """The files the trainable left in its checkpoint directory after yielding `epoch`."""

    trial_id: int
    attempt: int
    epoch: int
    files: dict[str, bytes]


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


Event = Started | EpochDone | Checkpointed | Ended | Lost


@dataclass(frozen=True)
class TrialTask:
    trial_id: int
    attempt: int
    params: dict[str, Any]
    seed: int
    epochs: int
    checkpoint: bool = False  # give the trainable a checkpoint_dir, if it accepts one
    restore: dict[str, bytes] | None = None  # the latest checkpoint's files, to continue from
    restore_epoch: int = 0  # the epoch after which `restore` was made


# what a stage's feed of trials gives: a trial to run, or None: none yet (a stage with an epoch
# budget draws more only once running trials have ended: ask again after the next events)
Drawn = TrialTask | None


def resumes_after(fn: Trainable, task: TrialTask) -> int:
    """The epoch this attempt continues after: the restored checkpoint's, else 0."""
    if task.restore and RESTORE_DIR in checkpoint_keywords(fn):
        return task.restore_epoch
    return 0


class Rungs(Protocol):
    """The stage's rung board as a worker sees it (`hpsearch.asha.RungBoard`, or a proxy of
    the Ray actor that holds it): asked after each rung epoch, None means go on."""

    rungs: tuple[int, ...]

    def report(self, trial_id: int, epoch: int, value: float) -> str | None: ...


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


def run_trial(
    fn: Trainable, task: TrialTask, metric: str, board: Rungs | None = None
) -> Iterator[EpochDone | Checkpointed | Ended]:
    """Events for one trial after its start: its epochs (each followed by its checkpoint when
    the trainable writes one), then exactly one `Ended`; with a rung board, the trial stops at
    a rung when the board says so."""
    with tempfile.TemporaryDirectory(prefix="hpsearch-trial-") as scratch:
        directories = _directories(fn, task, Path(scratch))
        yield from _run_trial(fn, task, metric, directories, board)


def _directories(fn: Trainable, task: TrialTask, scratch: Path) -> dict[str, str]:
    """The trainable's `checkpoint_dir` (empty) and `restore_dir` (the restored files)."""
    accepted = checkpoint_keywords(fn)
    given: dict[str, str] = {}
    if task.checkpoint and CHECKPOINT_DIR in accepted:
        (scratch / "checkpoint").mkdir()
        given[CHECKPOINT_DIR] = str(scratch / "checkpoint")
    if resumes_after(fn, task) and task.restore:
        (scratch / "restore").mkdir()
        for name, data in task.restore.items():
            (scratch / "restore" / name).write_bytes(data)
        given[RESTORE_DIR] = str(scratch / "restore")
    return given


def _checkpoint_files(directory: str) -> dict[str, bytes]:
    """The regular files at the top of the checkpoint directory, by name."""
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.is_file()}


def _run_trial(
    fn: Trainable,
    task: TrialTask,
    metric: str,
    directories: dict[str, str],
    board: Rungs | None,
) -> Iterator[EpochDone | Checkpointed | Ended]:
    started = time.perf_counter()
    first = epoch = task.restore_epoch if RESTORE_DIR in directories else 0
    saving = directories.get(CHECKPOINT_DIR)

    def end(status: Status, error: str | None) -> Ended:
        seconds = time.perf_counter() - started
        return Ended(task.trial_id, task.attempt, status, error and storable(error), seconds)

    drawing = first_layer_of(fn) if saving else None
    try:
        for out in fn(dict(task.params), epochs=task.epochs, seed=task.seed, **directories):
            epoch += 1
            metrics = _as_metrics(out, epoch, metric)
            bad = [f"{k}={v}" for k, v in metrics.items() if not math.isfinite(v)]
            files = _checkpoint_files(saving) if saving and not bad else {}
            if files and drawing is not None:  # the checkpoint's first-layer smoothness
                score = checkpoint_score(drawing, task.params, saving or "")
                metrics |= {SCORE_METRIC: score} if score is not None else {}
            yield EpochDone(task.trial_id, task.attempt, epoch, metrics)
            if bad:
                yield end(Status.DIVERGED, f"{', '.join(bad)} at epoch {epoch}")
                return
            if files:
                yield Checkpointed(task.trial_id, task.attempt, epoch, files)
            if epoch >= task.epochs:
                break
            if board is not None and epoch in board.rungs:
                reason = board.report(task.trial_id, epoch, metrics[metric])
                if reason is not None:  # decided before the next epoch starts
                    yield end(Status.STOPPED, reason)
                    return
    except FloatingPointError as exc:  # the trainable's own "this run is hopeless"
        yield end(Status.DIVERGED, str(exc) or f"FloatingPointError at epoch {epoch + 1}")
        return
    except _TrialFailed as exc:
        yield end(Status.FAILED, str(exc))
        return
    except Exception:
        yield end(Status.FAILED, traceback.format_exc())
        return
    if epoch == first and first < task.epochs:
        yield end(Status.FAILED, "the trainable yielded no epochs")
    else:
        yield end(Status.COMPLETED, None)


def run_bundle(
    fn: Trainable,
    tasks: list[TrialTask],
    metric: str,
    node_id: str | None,
    flush_seconds: float,
    board: Rungs | None = None,
) -> Iterator[list[Event]]:
    """Run trials one after another, yielding their events in lists at most every flush_seconds
    within a trial, and at each trial's start (with what the previous trial left).

    Buffering delays the report, not the decision: divergence still stops a trial at its epoch.
    A checkpoint is never buffered: the list holding it is sent at once. The flush at a
    trial's start means a finished trial's events never wait behind a trial that hangs, and
    the driver times each trial from its start (its time limit).
    """
    buffer: list[Event] = []
    for task in tasks:
        buffer.append(Started(task.trial_id, task.attempt, node_id, resumes_after(fn, task)))
        yield buffer
        buffer = []
        last_flush = time.monotonic()
        for event in run_trial(fn, task, metric, board):
            buffer.append(event)
            # a checkpoint goes at once: a worker that dies must not take it along
            if isinstance(event, Checkpointed) or time.monotonic() - last_flush >= flush_seconds:
                yield buffer
                buffer = []
                last_flush = time.monotonic()
    if buffer:
        yield buffer
