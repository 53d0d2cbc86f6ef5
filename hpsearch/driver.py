"""The stage runner: the only component that talks to both the Store and an executor.

It reads the study's records, asks the planner (`hpsearch.planner`) what to run, runs that
with an executor, records the events in batches and finishes the stage (flags, proposal).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from hpsearch import planner
from hpsearch.narrowing import Analysis
from hpsearch.planner import History, NewStage, NoProposalError, Plan, Resume, StageRequest
from hpsearch.ranking import ranked
from hpsearch.registry import qualified
from hpsearch.runtime.executor import Executor
from hpsearch.runtime.worker import Ended, EpochDone, Event, Lost, Started, TrialTask
from hpsearch.space import Space
from hpsearch.spec import StudySpec
from storage import (
    FINAL_STATUSES,
    Batch,
    Mode,
    StageRecord,
    StageStatus,
    Status,
    Store,
    StudyRecord,
    TrialRecord,
    now,
)

if TYPE_CHECKING:
    from hpsearch.checkpoints import Checkpointing, EpochValues

COMMIT_SECONDS = 0.25
COMMIT_ROWS = 5000
TOP = 10  # trials shown (and returned) as the stage's best


@dataclass
class Progress:
    """A running stage, as progress callbacks see it (after each commit, and once at start)."""

    stage: StageRecord
    total: int
    left: int  # trials without a final status when the run started
    resumed: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # final statuses only
    best: float | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in FINAL_STATUSES)


@dataclass(frozen=True)
class Finished:
    """A finished stage: its record (status and proposal set), its analysis, its best trials."""

    stage: StageRecord
    analysis: Analysis
    top: list[TrialRecord]  # completed trials, best first, at most TOP


@dataclass(frozen=True)
class StageOutcome:
    study: StudyRecord
    stage: StageRecord  # as finished
    resumed: bool
    counts: dict[str, int]  # trials by status
    analysis: Analysis
    top: list[TrialRecord]


ProgressCallback = Callable[[Progress], None]


class _Tracker:
    """Turns executor events into Batch rows and keeps each trial's best value."""

    def __init__(self, metric: str, mode: Mode, progress: Progress) -> None:
        self.metric = metric
        self.mode = mode
        self.progress = progress
        self.best: dict[int, tuple[float, int]] = {}
        self.epochs: dict[int, int] = {}
        # (epoch, value) of each running trial's epochs: what an attempt resumed from a
        # checkpoint takes over (up to the checkpoint's epoch)
        self.history: dict[int, EpochValues] = {}

    def apply(self, events: list[Event], batch: Batch) -> None:
        at = now()
        for event in events:
            if isinstance(event, EpochDone):
                self._epoch(event, batch)
            elif isinstance(event, Started):
                self._start(event)
                batch.start(event.trial_id, event.attempt, event.node_id, at)
            elif isinstance(event, Ended):
                self._end(event, batch, at)
            elif isinstance(event, Lost):
                batch.lose(event.trial_id, event.attempt, event.reason, at)

    def _start(self, event: Started) -> None:
        """A new attempt: from scratch, or after its restored checkpoint's epoch."""
        after = event.resumed_after
        kept = [(e, v) for e, v in self.history.pop(event.trial_id, []) if e <= after]
        self.history[event.trial_id] = kept
        self.best.pop(event.trial_id, None)
        self.epochs[event.trial_id] = after
        for epoch, value in kept:
            self._note(event.trial_id, epoch, value)

    def _note(self, trial_id: int, epoch: int, value: float | None) -> None:
        best = self.best.get(trial_id)
        if value is not None and math.isfinite(value):
            if best is None or self.mode.better(value, best[0]):
                self.best[trial_id] = (value, epoch)

    def _epoch(self, event: EpochDone, batch: Batch) -> None:
        trial_id, attempt, epoch = event.trial_id, event.attempt, event.epoch
        batch.metrics.extend(
            {"trial_id": trial_id, "attempt": attempt, "epoch": epoch, "name": k, "value": v}
            for k, v in event.metrics.items()
        )
        self.epochs[trial_id] = epoch
        value = event.metrics[self.metric]
        self.history.setdefault(trial_id, []).append((epoch, value))
        self._note(trial_id, epoch, value)

    def _end(self, event: Ended, batch: Batch, at: datetime) -> None:
        self.history.pop(event.trial_id, None)
        best = self.best.get(event.trial_id)
        batch.finish(
            event.trial_id,
            event.status,
            attempt=event.attempt,
            error=event.error,
            best=best,
            epochs_run=self.epochs.get(event.trial_id, 0),
            at=at,
        )
        counts = self.progress.counts
        counts[event.status] = counts.get(event.status, 0) + 1
        if best is not None and (
            self.progress.best is None or self.mode.better(best[0], self.progress.best)
        ):
            self.progress.best = best[0]


# -- planning: records in, the planner's decision out (reads only) ------------------------
def history(store: Store, spec: StudySpec, request: StageRequest) -> History:
    """What the planner needs to know of the study, read once."""
    study = store.study(spec.name)
    stages = tuple(store.stages(study.study_id)) if study else ()
    from_stage = owner = None
    if request.from_stage is not None:
        from_stage = store.stage(request.from_stage)
        if from_stage is not None:
            owner = next(s.name for s in store.studies() if s.study_id == from_stage.study_id)
    return History(study, stages, store.db, from_stage, owner)


def plan_stage(store: Store, spec: StudySpec, request: StageRequest) -> Plan:
    """Resume the unfinished stage of this kind, or a new stage's configurations.

    Writes nothing: bad requests (no parent, nothing completed) fail here, before Ray starts.
    """
    past = history(store, spec, request)
    decision = planner.decide(spec, request, past)
    if isinstance(decision, Resume):
        return decision
    parent_trials = store.trials(decision.parent.stage_id) if decision.parent else []
    return planner.new_stage(spec, request, past, decision, parent_trials)


def begin(store: Store, spec: StudySpec, plan: Plan) -> tuple[StudyRecord, StageRecord, bool]:
    """The study row, and the stage to run: the resumed one or a new one with its trials."""
    study = store.ensure_study(spec.name, qualified(spec.trainable), spec.metric, spec.mode)
    if isinstance(plan, Resume):
        return study, plan.stage, True
    stage = store.begin_stage(
        study.study_id,
        plan.kind,
        seed=plan.seed,
        epochs=plan.epochs,
        ranges=plan.space.to_dict(),
        fixed=spec.fixed,
        configs=plan.configs,
        seeds=list(plan.seeds),
        parent_stage_id=plan.parent_stage_id,
    )
    return study, stage, False


def start_or_resume(
    store: Store, spec: StudySpec, request: StageRequest
) -> tuple[StudyRecord, StageRecord, bool]:
    """Plan and begin in one call: (study, stage, resumed)."""
    return begin(store, spec, plan_stage(store, spec, request))


# -- running ------------------------------------------------------------------------------
def _task(stage: StageRecord, space: Space, trial: TrialRecord) -> TrialTask:
    """The trial's next attempt, with fixed params and sampled params in their own types."""
    params = {**stage.fixed, **space.typed(trial.params)}
    return TrialTask(trial.trial_id, trial.attempts + 1, params, trial.seed, stage.epochs)


def run_stage(
    store: Store,
    spec: StudySpec,
    stage: StageRecord,
    executor: Executor,
    on_progress: ProgressCallback | None = None,
    *,
    resumed: bool = False,
    checkpoints: Checkpointing | None = None,
) -> dict[str, int]:
    """Run the stage's unfinished trials; commit results in batches. Returns status counts.

    On an interrupt (Ctrl-C) everything received so far is committed before it propagates.
    With `checkpoints`, trials write checkpoints (each committed as soon as it arrives), a
    resumed trial continues from its latest, and retention prunes as the stage goes.
    """
    todo = store.trials(stage.stage_id, unfinished_only=True)
    counts = store.status_counts(stage.stage_id)
    progress = Progress(stage, total=stage.n_trials, left=len(todo), resumed=resumed)
    progress.counts = {k: v for k, v in counts.items() if Status(k).is_final}
    tracker = _Tracker(spec.metric, Mode(spec.mode), progress)
    space = Space.from_dict(stage.ranges)
    tasks = [_task(stage, space, t) for t in todo]
    if checkpoints:
        tasks, histories = checkpoints.prepare(store, stage.stage_id, tasks)
        tracker.history.update(histories)
    if on_progress:
        on_progress(progress)
    batch, last_commit = Batch(), time.monotonic()
    try:
        for events in executor.run(tasks):
            tracker.apply(events, batch)
            saved = checkpoints.save(stage.stage_id, events, batch) if checkpoints else False
            if (
                saved
                or time.monotonic() - last_commit >= COMMIT_SECONDS
                or len(batch) >= COMMIT_ROWS
            ):
                store.record(batch)
                batch, last_commit = Batch(), time.monotonic()
                if checkpoints and checkpoints.prune_due():
                    checkpoints.prune(store, stage.stage_id)
                if on_progress:
                    on_progress(progress)
    finally:
        store.record(batch)
    if checkpoints:
        checkpoints.prune(store, stage.stage_id)
    if on_progress:
        on_progress(progress)
    return store.status_counts(stage.stage_id)


def finish_stage(store: Store, spec: StudySpec, stage: StageRecord) -> Finished:
    """Mark the stage finished with its flags and proposal (None when nothing completed)."""
    trials = store.trials(stage.stage_id)
    analysis = planner.analyze_stage(spec, stage, trials)
    stored = analysis.stored_proposal()
    store.finish_stage(stage.stage_id, proposal=stored, flags=analysis.flags)
    done = replace(stage, status=StageStatus.FINISHED, proposal=stored)
    return Finished(done, analysis, ranked(trials, spec.mode)[:TOP])


def execute(
    store: Store,
    spec: StudySpec,
    plan: Plan,
    executor: Executor,
    on_progress: ProgressCallback | None = None,
    checkpoints: Checkpointing | None = None,
) -> StageOutcome:
    """Begin (or resume) the planned stage, run it with the executor, finish it."""
    study, stage, resumed = begin(store, spec, plan)
    counts = run_stage(
        store, spec, stage, executor, on_progress, resumed=resumed, checkpoints=checkpoints
    )
    finished = finish_stage(store, spec, stage)
    return StageOutcome(study, finished.stage, resumed, counts, finished.analysis, finished.top)


def top_trials(store: Store, stage: StageRecord, mode: str, k: int = TOP) -> list[TrialRecord]:
    """The stage's best completed trials, best first."""
    return ranked(store.trials(stage.stage_id), mode)[:k]


__all__ = [
    "Finished",
    "NewStage",
    "NoProposalError",
    "Progress",
    "StageOutcome",
    "StageRequest",
    "begin",
    "execute",
    "finish_stage",
    "history",
    "plan_stage",
    "run_stage",
    "start_or_resume",
    "top_trials",
]
