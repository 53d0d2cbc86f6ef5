"""The stage runner: the only component that talks to both the Store and an executor.

It reads the study's records, asks the planner (`hpsearch.planner`) what to run, runs that
with an executor, records the events in batches and finishes the stage (flags, proposal).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from hpsearch import asha, planner
from hpsearch.asha import EpochBudget, RungBoard
from hpsearch.commits import Committer
from hpsearch.narrowing import Analysis
from hpsearch.planner import History, NewStage, NoProposalError, Plan, Resume, StageRequest
from hpsearch.ranking import sample_every
from hpsearch.registry import qualified
from hpsearch.runtime.executor import Executor
from hpsearch.runtime.worker import Drawn, Ended, EpochDone, Event, Lost, Started, TrialTask
from hpsearch.space import Space
from hpsearch.spec import StudySpec
from hpsearch.stall import StallWatch
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
CHUNK = 1000  # trials sampled and inserted, or read back to run, at a time
ANALYSIS_TRIALS = 10_000  # a larger stage's analysis weighs a sample of about this many


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
    stalled: tuple[int, float] | None = None  # trials without an epoch for long, longest gap
    budget: EpochBudget | None = None  # a stage that draws trials until its epochs are spent

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
        self.budget = progress.budget
        self.best: dict[int, tuple[float, int]] = {}
        self.epochs: dict[int, int] = {}
        # (epoch, value) of each running trial's epochs: what an attempt resumed from a
        # checkpoint takes over (up to the checkpoint's epoch)
        self.history: dict[int, EpochValues] = {}
        self.stalls = StallWatch()

    def apply(self, events: list[Event], batch: Batch) -> None:
        at, clock = now(), time.monotonic()
        for event in events:
            if isinstance(event, EpochDone):
                self._epoch(event, batch)
                self.stalls.alive(event.trial_id, clock)
            elif isinstance(event, Started):
                self._start(event)
                batch.start(event.trial_id, event.attempt, event.node_id, at)
                self.stalls.alive(event.trial_id, clock)
            elif isinstance(event, Ended):
                self._end(event, batch, at)
                self.stalls.ended(event.trial_id, event.seconds, self.epochs.get(event.trial_id, 0))
            elif isinstance(event, Lost):
                batch.lose(event.trial_id, event.attempt, event.reason, at)
                self.stalls.ended(event.trial_id, 0.0, 0)
        self.progress.stalled = self.stalls.stalled(clock)

    def _start(self, event: Started) -> None:
        """A new attempt: from scratch, or after its restored checkpoint's epoch."""
        after = event.resumed_after
        kept = [(e, v) for e, v in self.history.pop(event.trial_id, []) if e <= after]
        self.history[event.trial_id] = kept
        self.best.pop(event.trial_id, None)
        self.epochs[event.trial_id] = after
        if self.budget:
            self.budget.ran(event.trial_id, after)
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
        if self.budget:
            self.budget.ran(trial_id, epoch)
        value = event.metrics[self.metric]
        self.history.setdefault(trial_id, []).append((epoch, value))
        self._note(trial_id, epoch, value)

    def _end(self, event: Ended, batch: Batch, at: datetime) -> None:
        self.history.pop(event.trial_id, None)  # an ended trial's state is released
        best = self.best.pop(event.trial_id, None)
        epochs_run = self.epochs.pop(event.trial_id, 0)
        batch.finish(
            event.trial_id,
            event.status,
            attempt=event.attempt,
            error=event.error,
            best=best,
            epochs_run=epochs_run,
            at=at,
        )
        if self.budget:
            self.budget.end(event.trial_id, epochs_run)
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
    parent_trials = []
    if decision.parent:
        parent_trials = analysis_trials(store, spec, decision.parent, request.top)
    return planner.new_stage(spec, request, past, decision, parent_trials)


def begin(
    store: Store, spec: StudySpec, plan: Plan, chunk: int = CHUNK
) -> tuple[StudyRecord, StageRecord, bool]:
    """The study row, and the stage to run: the resumed one, or a new one with its first
    `chunk` trials (and every kept one); `run_stage` inserts the rest as it goes."""
    study = store.ensure_study(spec.name, qualified(spec.trainable), spec.metric, spec.mode)
    if isinstance(plan, Resume):
        return study, plan.stage, True
    configs, seeds = plan.chunk(0, max(chunk, len(plan.keep)))
    stage = store.begin_stage(
        study.study_id,
        plan.kind,
        seed=plan.seed,
        epochs=plan.epochs,
        ranges=plan.space.to_dict(),
        fixed=spec.fixed,
        configs=configs,
        seeds=seeds,
        parent_stage_id=plan.parent_stage_id,
        n_trials=plan.trials,
        epoch_budget=plan.epoch_budget,
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


def _tasks(
    store: Store, stage: StageRecord, chunk: int, budget: EpochBudget | None = None
) -> Iterator[Drawn]:
    """The stage's trials to run, `chunk` at a time: first the unfinished ones on record, then
    the ones not inserted yet, sampled and inserted as the executor takes them. With an epoch
    budget that has no room while trials run, None: ask again once some have ended."""
    space = Space.from_dict(stage.ranges)
    after = -1
    while trials := store.trials(stage.stage_id, unfinished_only=True, after=after, limit=chunk):
        yield from (_task(stage, space, t) for t in trials)
        after = trials[-1].number
    inserted = sum(store.status_counts(stage.stage_id).values())
    for start, stop in planner.draws(stage.n_trials, inserted, chunk, budget):
        if start == stop:
            yield None
            continue
        configs, seeds = planner.configurations(space, stage.seed, start, stop)
        ids = store.add_trials(stage.stage_id, start, configs, seeds)
        for trial_id, config, seed in zip(ids, configs, seeds, strict=True):
            yield TrialTask(trial_id, 1, {**stage.fixed, **config}, seed, stage.epochs)


def epoch_budget(store: Store, stage: StageRecord, counts: dict[str, int]) -> EpochBudget | None:
    """The stage's epoch budget with what its ended trials spent (None: it has none);
    `counts`: its trials on record by status."""
    if stage.epoch_budget is None:
        return None
    ended, spent = store.epochs_spent(stage.stage_id)
    pending = sum(counts.values()) - ended
    return EpochBudget(stage.epoch_budget, stage.epochs, ended, spent, pending)


class _Feed:
    """Tasks drawn one by one, with how many are left (the executor sizes bundles by it)."""

    def __init__(self, tasks: Iterator[Drawn], left: int) -> None:
        self._tasks = tasks
        self.left = left

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> Drawn:
        task = next(self._tasks)
        self.left -= task is not None
        return task

    def __length_hint__(self) -> int:
        return max(self.left, 0)


def run_stage(
    store: Store,
    spec: StudySpec,
    stage: StageRecord,
    executor: Executor,
    on_progress: ProgressCallback | None = None,
    *,
    resumed: bool = False,
    checkpoints: Checkpointing | None = None,
    chunk: int = CHUNK,
) -> dict[str, int]:
    """Run the stage's unfinished trials, reading (or sampling and inserting) `chunk` at a
    time; commit results in batches. Returns status counts.

    On an interrupt (Ctrl-C) everything received so far is committed before it propagates.
    With `checkpoints`, trials write checkpoints (files stored as they arrive), a
    resumed trial continues from its latest, and retention prunes as the stage goes.
    """
    counts = store.status_counts(stage.stage_id)
    final = {k: v for k, v in counts.items() if Status(k).is_final}
    left = stage.n_trials - sum(final.values())
    budget = epoch_budget(store, stage, counts)
    progress = Progress(stage, stage.n_trials, left, resumed, budget=budget)
    progress.counts = final
    tracker = _Tracker(spec.metric, Mode(spec.mode), progress)
    stream = _tasks(store, stage, chunk, budget)
    if checkpoints:
        stream = checkpoints.prepare(store, stage.stage_id, stream, tracker.history)
    tasks = _Feed(stream, left)
    board = rung_board(store, spec, stage, resumed)
    if on_progress:
        on_progress(progress)
    commit = Committer(store, progress.counts)
    batch, last_commit = Batch(), time.monotonic()
    try:
        for events in executor.run(tasks) if board is None else executor.run(tasks, board):
            tracker.apply(events, batch)
            if checkpoints:
                checkpoints.save(stage.stage_id, events, batch)
            if time.monotonic() - last_commit >= COMMIT_SECONDS or len(batch) >= COMMIT_ROWS:
                commit(batch)
                batch, last_commit = Batch(), time.monotonic()
                if checkpoints and checkpoints.prune_due():
                    checkpoints.prune(store, stage.stage_id)
                if on_progress:
                    on_progress(progress)
    finally:
        commit(batch)
    if checkpoints:
        checkpoints.prune(store, stage.stage_id)
    if on_progress:
        on_progress(progress)
    return store.status_counts(stage.stage_id)


def finish_stage(store: Store, spec: StudySpec, stage: StageRecord) -> Finished:
    """Mark the stage finished with its flags and proposal (None when nothing completed).

    Reads a bounded number of trials however large the stage (`analysis_trials`)."""
    stage = store.stage(stage.stage_id) or stage  # its trial count as it ended
    analysis = planner.analyze_stage(spec, stage, analysis_trials(store, spec, stage))
    stored = analysis.stored_proposal()
    store.finish_stage(stage.stage_id, proposal=stored, flags=analysis.flags)
    done = replace(stage, status=StageStatus.FINISHED, proposal=stored)
    return Finished(done, analysis, store.top_trials(stage.stage_id, spec.mode, TOP))


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


def rung_board(
    store: Store, spec: StudySpec, stage: StageRecord, resumed: bool
) -> RungBoard | None:
    """The stage's ASHA rung board (None without a schedule), rebuilt from the stored metrics
    when the stage resumes: every decision already made stands."""
    schedule = spec.schedule(stage.kind)
    rungs = schedule.rungs(stage.epochs)
    if not rungs:
        return None
    board = RungBoard(rungs, schedule.eta, spec.mode, spec.metric)
    if resumed:  # rows one epoch past the last rung tell which trials went on past it
        rows = store.metric_rows(stage.stage_id, spec.metric, max(rungs) + 1)
        asha.rebuild(board, store.trials(stage.stage_id), rows)
    return board


def analysis_trials(
    store: Store, spec: StudySpec, stage: StageRecord, top: int | None = None
) -> list[TrialRecord]:
    """The trials that flags, proposals and `keep` weigh, ranked as `ranking_trials` ranks
    them: every trial of a stage of up to ANALYSIS_TRIALS; of a larger one, every k-th trial
    (`sample_every`) and the best ones, so analysis reads a bounded number of rows however
    large the stage."""
    every = sample_every(stage.n_trials, ANALYSIS_TRIALS)
    trials = store.trials(stage.stage_id, every=every)
    if every == 1:
        return ranking_trials(store, spec, stage, top, trials)
    sampled = {t.trial_id for t in trials}
    k = max(TOP, top or spec.fine.top, spec.fine.keep)
    best = [t for t in store.top_trials(stage.stage_id, spec.mode, k) if t.trial_id not in sampled]
    trials = sorted([*trials, *best], key=lambda t: t.number)
    return ranking_trials(store, spec, stage, top, trials, sample=True)


def ranking_trials(
    store: Store,
    spec: StudySpec,
    stage: StageRecord,
    top: int | None = None,
    trials: list[TrialRecord] | None = None,
    sample: bool = False,
) -> list[TrialRecord]:
    """The stage's trials (or these, a `sample` of them) as flags, proposals and `keep` rank
    them: with stopped trials, at the common epoch `asha.fidelity` picks (README, "ASHA")."""
    trials = store.trials(stage.stage_id) if trials is None else trials
    level = asha.fidelity(trials, stage.epochs, top or spec.fine.top)
    if level is None or level >= stage.epochs:
        return trials
    ids = [t.trial_id for t in trials] if sample else None
    rows = store.metric_rows(stage.stage_id, spec.metric, level, ids)
    return asha.at_equal_fidelity(trials, level, stage.epochs, spec.mode, rows)


@dataclass(frozen=True)
class Saved:
    """An unfinished stage as the database holds it (what an interrupted run leaves)."""

    stage: StageRecord
    counts: dict[str, int]  # trials on record by status
    budget: EpochBudget | None = None  # with an epoch budget: what the ended trials spent

    @property
    def inserted(self) -> int:
        """Trials (configurations) inserted, of stage.n_trials."""
        return sum(self.counts.values())


def saved(store: Store, study: str, kind: str) -> Saved | None:
    """The study's latest stage of this kind if it is unfinished, with its trial counts."""
    record = store.study(study)
    stages = [s for s in store.stages(record.study_id) if s.kind == kind] if record else []
    if not stages or stages[-1].status == StageStatus.FINISHED:
        return None
    stage = stages[-1]
    counts = store.status_counts(stage.stage_id)
    return Saved(stage, counts, epoch_budget(store, stage, counts))


__all__ = [
    "Finished",
    "NewStage",
    "NoProposalError",
    "Progress",
    "Saved",
    "StageOutcome",
    "StageRequest",
    "begin",
    "execute",
    "finish_stage",
    "history",
    "plan_stage",
    "run_stage",
    "saved",
    "start_or_resume",
]
