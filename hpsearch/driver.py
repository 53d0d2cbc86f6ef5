"""The stage driver: the only component that talks to both the Store and an executor."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hpsearch.errors import HpsearchError
from hpsearch.narrowing import Analysis, analyze, ranked, split_proposal
from hpsearch.registry import qualified
from hpsearch.runtime.executor import Executor
from hpsearch.runtime.worker import Event, TrialTask
from hpsearch.space import Space, trial_seeds
from hpsearch.spec import StudySpec
from storage import Batch, StageRecord, Store, StudyRecord, TrialRecord, now

COMMIT_SECONDS = 0.25
COMMIT_ROWS = 5000


@dataclass(frozen=True)
class StagePlan:
    """What a new stage samples; ignored when an unfinished stage of the same kind resumes."""

    kind: str
    space: Space
    trials: int
    epochs: int
    seed: int | None = None  # None: the spec's seed plus the number of earlier stages
    parent_stage_id: int | None = None
    keep: tuple[dict[str, Any], ...] = ()  # configurations run as-is, before the sampled ones


@dataclass
class Progress:
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    best: float | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("completed", "failed", "diverged"))


@dataclass(frozen=True)
class StageOutcome:
    stage: StageRecord
    resumed: bool
    counts: dict[str, int]
    top: list[TrialRecord]


class _Tracker:
    """Turns executor events into Batch rows and keeps each trial's best value."""

    def __init__(self, metric: str, mode: str, progress: Progress) -> None:
        self.metric = metric
        self.better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
        self.progress = progress
        self.best: dict[int, tuple[float, int]] = {}
        self.epochs: dict[int, int] = {}

    def apply(self, events: list[Event], batch: Batch) -> None:
        at = now()
        for event in events:
            kind, trial_id, attempt = event[0], event[1], event[2]
            if kind == "epoch":
                self._epoch(trial_id, attempt, event[3], event[4], batch)
            elif kind == "start":
                self.best.pop(trial_id, None)
                self.epochs[trial_id] = 0
                batch.start(trial_id, attempt, event[3], at)
            elif kind == "end":
                self._end(trial_id, attempt, event[3], event[4], batch, at)
            elif kind == "lost":  # the worker died: the attempt ends, the trial runs again
                batch.lose(trial_id, attempt, event[3], at)

    def _epoch(
        self, trial_id: int, attempt: int, epoch: int, metrics: dict[str, float], batch: Batch
    ) -> None:
        batch.metrics.extend(
            {"trial_id": trial_id, "attempt": attempt, "epoch": epoch, "name": k, "value": v}
            for k, v in metrics.items()
        )
        self.epochs[trial_id] = epoch
        value = metrics[self.metric]
        best = self.best.get(trial_id)
        if math.isfinite(value) and (best is None or self.better(value, best[0])):
            self.best[trial_id] = (value, epoch)

    def _end(
        self, trial_id: int, attempt: int, status: str, error: str | None, batch: Batch, at: Any
    ) -> None:
        best = self.best.get(trial_id)
        batch.finish(
            trial_id,
            status,
            attempt=attempt,
            error=error,
            best=best,
            epochs_run=self.epochs.get(trial_id, 0),
            at=at,
        )
        counts = self.progress.counts
        counts[status] = counts.get(status, 0) + 1
        if best is not None and (
            self.progress.best is None or self.better(best[0], self.progress.best)
        ):
            self.progress.best = best[0]


def start_or_resume(
    store: Store, spec: StudySpec, plan: StagePlan
) -> tuple[StudyRecord, StageRecord, bool]:
    """The unfinished stage of this kind if there is one, else a new stage from the plan."""
    study = store.ensure_study(spec.name, qualified(spec.trainable), spec.metric, spec.mode)
    stages = store.stages(study.study_id)
    unfinished = _unfinished(stages, plan.kind)
    if unfinished is not None:
        return study, unfinished, True
    seed = plan.seed if plan.seed is not None else spec.seed + len(stages)
    rng = np.random.default_rng(seed)
    kept = [dict(c) for c in plan.keep[: plan.trials]]
    configs = kept + plan.space.sample(plan.trials - len(kept), rng)
    stage = store.begin_stage(
        study.study_id,
        plan.kind,
        seed=seed,
        epochs=plan.epochs,
        ranges=plan.space.to_dict(),
        fixed=spec.fixed,
        configs=configs,
        seeds=trial_seeds(rng, plan.trials),
        parent_stage_id=plan.parent_stage_id,
    )
    return study, stage, False


def _task(stage: StageRecord, space: Space, trial: TrialRecord) -> TrialTask:
    """The trial's next attempt, with fixed params and sampled params in their own types."""
    params = {**stage.fixed, **space.typed(trial.params)}
    return TrialTask(trial.trial_id, trial.attempts + 1, params, trial.seed, stage.epochs)


def run_stage(
    store: Store,
    spec: StudySpec,
    stage: StageRecord,
    executor: Executor,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, int]:
    """Run the stage's unfinished trials; commit results in batches. Returns status counts.

    On an interrupt (Ctrl-C) everything received so far is committed before it propagates.
    """
    todo = store.trials(stage.stage_id, unfinished_only=True)
    counts = store.status_counts(stage.stage_id)
    progress = Progress(total=stage.n_trials)
    progress.counts = {k: v for k, v in counts.items() if k not in ("pending", "running")}
    tracker = _Tracker(spec.metric, spec.mode, progress)
    space = Space.from_dict(stage.ranges)
    tasks = [_task(stage, space, t) for t in todo]
    batch, last_commit = Batch(), time.monotonic()
    try:
        for events in executor.run(tasks):
            tracker.apply(events, batch)
            if time.monotonic() - last_commit >= COMMIT_SECONDS or len(batch) >= COMMIT_ROWS:
                store.record(batch)
                batch, last_commit = Batch(), time.monotonic()
                if on_progress:
                    on_progress(progress)
    finally:
        store.record(batch)
    if on_progress:
        on_progress(progress)
    return store.status_counts(stage.stage_id)


def top_trials(store: Store, stage: StageRecord, mode: str, k: int = 10) -> list[TrialRecord]:
    """The stage's best completed trials, best first."""
    return ranked(store.trials(stage.stage_id), mode)[:k]


# -- finishing a stage and planning the next one ------------------------------------------
class NoProposalError(HpsearchError):
    """A stage to build the next one from is missing, unfinished or has no completed trial."""


def analyze_stage(
    store: Store, spec: StudySpec, stage: StageRecord, top: int | None = None
) -> Analysis:
    """Edge flags and the proposal for the next stage, from this stage's trials."""
    return analyze(
        Space.from_dict(stage.ranges),
        store.trials(stage.stage_id),
        spec.mode,
        top=top or spec.fine.top,
        edge=spec.fine.edge,
        pad=spec.fine.pad,
    )


def finish_stage(store: Store, spec: StudySpec, stage: StageRecord) -> Analysis:
    """Mark the stage finished with its flags and proposal (None when nothing completed)."""
    analysis = analyze_stage(store, spec, stage)
    store.finish_stage(stage.stage_id, proposal=analysis.stored_proposal(), flags=analysis.flags)
    return analysis


def next_plan(
    store: Store,
    spec: StudySpec,
    kind: str,
    *,
    trials: int,
    epochs: int,
    seed: int | None = None,
    from_stage: int | None = None,
    top: int | None = None,
) -> StagePlan:
    """A stage on the proposal of a finished stage: `fine`, or `coarse` for --widen.

    Default parent: the latest finished coarse stage for `fine`, the latest finished stage
    for a widened coarse. An unfinished stage of the same kind is resumed instead.
    """
    study = store.study(spec.name)
    hint = f"run `hpsearch coarse {spec.path}` first"
    if study is None:
        raise NoProposalError(f"study {spec.name!r}: no stages yet in {store.db}: {hint}")
    stages = store.stages(study.study_id)
    pending = _unfinished(stages, kind)
    if pending is not None:
        return StagePlan(kind, Space.from_dict(pending.ranges), trials, epochs, seed)
    parent = _parent(store, study, stages, kind, from_stage, hint)
    space = Space.from_dict(_proposal(store, spec, parent, top))
    keep = min(spec.fine.keep, top or spec.fine.top) if kind == "fine" else 0
    best = ranked(store.trials(parent.stage_id), spec.mode)[:keep]
    return StagePlan(
        kind,
        space,
        trials,
        epochs,
        seed,
        parent_stage_id=parent.stage_id,
        keep=tuple(space.typed(t.params) for t in best),
    )


def _unfinished(stages: list[StageRecord], kind: str) -> StageRecord | None:
    """The latest stage of this kind if it is not finished (a resumable stage)."""
    for stage in reversed(stages):
        if stage.kind == kind:
            return stage if stage.status != "finished" else None
    return None


def _parent(
    store: Store,
    study: StudyRecord,
    stages: list[StageRecord],
    kind: str,
    from_stage: int | None,
    hint: str,
) -> StageRecord:
    if from_stage is not None:
        stage = store.stage(from_stage)
        if stage is None:
            raise NoProposalError(f"--from-stage {from_stage}: no such stage in {store.db}")
        if stage.study_id != study.study_id:
            other = next(s.name for s in store.studies() if s.study_id == stage.study_id)
            raise NoProposalError(
                f"--from-stage {from_stage}: stage {from_stage} belongs to study {other!r}, "
                f"not {study.name!r}"
            )
        if stage.status != "finished":
            raise NoProposalError(
                f"--from-stage {from_stage}: stage {from_stage} is not finished: "
                f"rerun `hpsearch {stage.kind}` on it to finish it"
            )
        return stage
    wanted = ("coarse",) if kind == "fine" else ("coarse", "fine")
    for stage in reversed(stages):
        if stage.kind in wanted and stage.status == "finished":
            return stage
    raise NoProposalError(f"study {study.name!r}: no finished coarse stage in {store.db}: {hint}")


def _proposal(
    store: Store, spec: StudySpec, parent: StageRecord, top: int | None
) -> dict[str, Any]:
    ranges, _ = split_proposal(parent.proposal)
    if ranges is None or top is not None:
        ranges = analyze_stage(store, spec, parent, top).proposal
    if ranges is None:
        counts = ", ".join(
            f"{n} {s}" for s, n in sorted(store.status_counts(parent.stage_id).items())
        )
        raise NoProposalError(
            f"stage {parent.stage_id}: no trial completed ({counts}): nothing to narrow from; "
            f"see `hpsearch show {spec.path}` for the errors, fix the trainable and rerun "
            f"`hpsearch coarse {spec.path}`"
        )
    return ranges
