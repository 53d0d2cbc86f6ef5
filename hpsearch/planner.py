"""What to run next (the oracle of Keras Tuner's oracle/tuner split): pure, from records.

The driver reads the study's records into a `History`, asks `decide` (resume the unfinished
stage of this kind, or start a new one on which parent), loads the parent's trials that
analysis weighs, asks `new_stage` for the stage, and runs what it gets, drawing its
configurations chunk by chunk. No Ray, no database handle: the search-quality benchmark calls
the same functions on its own records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hpsearch.asha import EpochBudget
from hpsearch.errors import HpsearchError
from hpsearch.narrowing import Analysis, analyze, split_proposal
from hpsearch.ranking import ranked
from hpsearch.space import Space, trial_seeds
from hpsearch.spec import StudySpec
from storage import StageKind, StageRecord, StageStatus, StudyRecord, TrialRecord


class NoProposalError(HpsearchError):
    """A stage to build the next one from is missing, unfinished or has no completed trial."""


@dataclass(frozen=True)
class StageRequest:
    """What the user asked for (the command's options); resuming a stage ignores the rest."""

    kind: StageKind
    trials: int
    epochs: int
    seed: int | None = None  # None: the spec's seed plus the number of earlier stages
    widen: bool = False  # coarse only: sample the latest finished stage's proposal
    from_stage: int | None = None  # the stage whose proposal to sample (default: latest)
    top: int | None = None  # recompute the parent's proposal from its best `top` trials
    schedule: str | None = None  # "asha" | "none": overrides the spec's stage schedule

    @property
    def needs_parent(self) -> bool:
        return self.kind == StageKind.FINE or self.widen


@dataclass(frozen=True)
class History:
    """The study's records, as the runner read them."""

    study: StudyRecord | None  # None: the study has no row yet
    stages: tuple[StageRecord, ...]  # its stages in order
    db: str  # names the database in messages
    from_stage: StageRecord | None = None  # the requested --from-stage, of any study
    from_study: str | None = None  # the name of the study that owns `from_stage`


@dataclass(frozen=True)
class Resume:
    """Finish this unfinished stage: its trials without a final status run again."""

    stage: StageRecord


@dataclass(frozen=True)
class Start:
    """Start a new stage: on the spec's ranges (no parent) or on the parent's proposal."""

    parent: StageRecord | None


SAMPLE_BLOCK = 1000  # trials drawn per Generator: trial i comes from block i // SAMPLE_BLOCK


@dataclass(frozen=True)
class NewStage:
    """A new stage: its ranges, seed and size; its configurations are drawn chunk by chunk
    (`chunk`) as it runs, each fixed by the seed and the trial's number alone."""

    kind: StageKind
    space: Space
    epochs: int
    seed: int
    trials: int
    keep: tuple[dict[str, Any], ...]  # the parent's best configurations, run first as they are
    parent_stage_id: int | None = None
    epoch_budget: int | None = None  # draw trials until this many epochs are spent

    def chunk(self, start: int, stop: int) -> tuple[list[dict[str, Any]], list[int]]:
        """The configurations and seeds of trials `start` to `stop - 1` (of the first
        `trials`: a stage with an epoch budget draws the rest as it runs)."""
        return configurations(self.space, self.seed, start, min(stop, self.trials), self.keep)

    @property
    def configs(self) -> list[dict[str, Any]]:
        """Every trial's configuration, in trial order (a small stage's; `chunk` for a large)."""
        return self.chunk(0, self.trials)[0]

    @property
    def seeds(self) -> list[int]:
        return self.chunk(0, self.trials)[1]


def configurations(
    space: Space, seed: int, start: int, stop: int, keep: Sequence[dict[str, Any]] = ()
) -> tuple[list[dict[str, Any]], list[int]]:
    """Configurations and seeds of trials `start` to `stop - 1`: trial i is `keep[i]` if there
    is one, else drawn from `space`; its seed and draw come from block i // SAMPLE_BLOCK, a
    Generator seeded by (seed, block), so they depend on neither the stage's size nor on how
    its trials are chunked."""
    configs: list[dict[str, Any]] = []
    seeds: list[int] = []
    for block in range(start // SAMPLE_BLOCK, -(-stop // SAMPLE_BLOCK)):
        rng = np.random.default_rng([seed, block])
        drawn = space.sample(SAMPLE_BLOCK, rng)
        block_seeds = trial_seeds(rng, SAMPLE_BLOCK)
        first = block * SAMPLE_BLOCK
        for i in range(max(start, first), min(stop, first + SAMPLE_BLOCK)):
            configs.append(dict(keep[i]) if i < len(keep) else drawn[i - first])
            seeds.append(block_seeds[i - first])
    return configs, seeds


def draws(
    trials: int, drawn: int, chunk: int, budget: EpochBudget | None = None
) -> Iterator[tuple[int, int]]:
    """(start, stop) of the trials to draw next, `drawn` being drawn already: up to `trials`,
    or with an epoch budget as many as it leaves room for, judged again once the previous
    ones are handed out. An empty range: no room while trials drawn are still running (ask
    again once some have ended); the budget is spent when none is running."""
    if budget is None:
        for start in range(drawn, trials, chunk):
            yield start, min(start + chunk, trials)
        return
    while (n := min(chunk, budget.trials_left())) or budget.pending:
        budget.drawn(n)
        yield drawn, drawn + n
        drawn += n


Plan = Resume | NewStage


def decide(spec: StudySpec, request: StageRequest, history: History) -> Resume | Start:
    """Resume the unfinished stage of the requested kind, else start one (on which parent)."""
    pending = resumable(history.stages, request.kind)
    if pending is not None:
        return Resume(pending)
    return Start(parent(spec, request, history) if request.needs_parent else None)


def new_stage(
    spec: StudySpec,
    request: StageRequest,
    history: History,
    start: Start,
    parent_trials: Sequence[TrialRecord] = (),
) -> NewStage:
    """A new stage; `parent_trials` are the trials of `start.parent` that analysis weighs
    (all of them, or for a large stage a sample and its best: `driver.analysis_trials`)."""
    seed = request.seed if request.seed is not None else spec.seed + len(history.stages)
    if start.parent is None:
        stage = sample(request.kind, spec.space, request.trials, request.epochs, seed)
    else:
        stage = successor(spec, request, start.parent, parent_trials, seed)
    budget = spec.schedule(request.kind).epoch_budget(request.trials, request.epochs)
    return replace(stage, epoch_budget=budget)


def successor(
    spec: StudySpec,
    request: StageRequest,
    parent: StageRecord,
    parent_trials: Sequence[TrialRecord],
    seed: int,
) -> NewStage:
    """A stage on the parent's proposal; a fine stage re-runs the parent's best `keep` first."""
    space = Space.from_dict(proposal(spec, parent, parent_trials, request.top))
    keep = 0
    if request.kind == StageKind.FINE:
        keep = min(spec.fine.keep, request.top or spec.fine.top)
    best = tuple(space.typed(t.params) for t in ranked(parent_trials, spec.mode)[:keep])
    return sample(
        request.kind,
        space,
        request.trials,
        request.epochs,
        seed,
        keep=best,
        parent_stage_id=parent.stage_id,
    )


def sample(
    kind: StageKind,
    space: Space,
    trials: int,
    epochs: int,
    seed: int,
    *,
    keep: Sequence[dict[str, Any]] = (),
    parent_stage_id: int | None = None,
) -> NewStage:
    """A stage of `trials` trials: `keep` first, the rest sampled (lazily, by `chunk`)."""
    kept = tuple(dict(c) for c in keep[:trials])
    return NewStage(kind, space, epochs, seed, trials, kept, parent_stage_id)


def seeds_stage(parent: StageRecord, best: TrialRecord, size: int, seed: int) -> NewStage:
    """An ensemble stage: the parent's best configuration `size` times, each with its own
    seed (drawn as every stage's trial seeds are, from `seed`), for the parent's epochs."""
    space = Space.from_dict(parent.ranges)
    config = space.typed(best.params)
    return sample(
        StageKind.ENSEMBLE,
        space,
        size,
        parent.epochs,
        seed,
        keep=[dict(config) for _ in range(size)],
        parent_stage_id=parent.stage_id,
    )


def resumable(stages: Sequence[StageRecord], kind: StageKind) -> StageRecord | None:
    """The latest stage of this kind if it is not finished."""
    for stage in reversed(stages):
        if stage.kind == kind:
            return stage if stage.status != StageStatus.FINISHED else None
    return None


def parent(spec: StudySpec, request: StageRequest, history: History) -> StageRecord:
    """The stage whose proposal a new stage samples: --from-stage, else the latest finished
    coarse stage (fine) or the latest finished stage (a widened coarse)."""
    hint = f"run `hpsearch coarse {spec.path}` first"
    study = history.study
    if study is None:
        raise NoProposalError(f"study {spec.name!r}: no stages yet in {history.db}: {hint}")
    if request.from_stage is not None:
        return _from_stage(request.from_stage, study, history)
    wanted = (
        (StageKind.COARSE,)
        if request.kind == StageKind.FINE
        else (StageKind.COARSE, StageKind.FINE)
    )
    for stage in reversed(history.stages):
        if stage.kind in wanted and stage.status == StageStatus.FINISHED:
            return stage
    raise NoProposalError(f"study {study.name!r}: no finished coarse stage in {history.db}: {hint}")


def _from_stage(stage_id: int, study: StudyRecord, history: History) -> StageRecord:
    stage = history.from_stage
    if stage is None or stage.stage_id != stage_id:
        raise NoProposalError(f"--from-stage {stage_id}: no such stage in {history.db}")
    if stage.study_id != study.study_id:
        raise NoProposalError(
            f"--from-stage {stage_id}: stage {stage_id} belongs to study {history.from_study!r}, "
            f"not {study.name!r}"
        )
    if stage.status != StageStatus.FINISHED:
        raise NoProposalError(
            f"--from-stage {stage_id}: stage {stage_id} is not finished: "
            f"rerun `hpsearch {stage.kind}` on it to finish it"
        )
    return stage


def proposal(
    spec: StudySpec,
    parent: StageRecord,
    parent_trials: Sequence[TrialRecord],
    top: int | None = None,
) -> dict[str, Any]:
    """The ranges the parent proposed (recomputed from its best `top` trials when given)."""
    ranges, _ = split_proposal(parent.proposal)
    if ranges is None or top is not None:
        ranges = analyze_stage(spec, parent, parent_trials, top).proposal
    if ranges is None:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(status_counts(parent_trials).items()))
        raise NoProposalError(
            f"stage {parent.stage_id}: no trial completed ({counts}): nothing to narrow from; "
            f"see `hpsearch show {spec.path}` for the errors, fix the trainable and rerun "
            f"`hpsearch coarse {spec.path}`"
        )
    return ranges


def analyze_stage(
    spec: StudySpec,
    stage: StageRecord,
    trials: Sequence[TrialRecord],
    top: int | None = None,
) -> Analysis:
    """Edge flags and the proposal for the next stage, from this stage's trials (an ensemble
    stage, one configuration with several seeds, has neither)."""
    if not StageKind(stage.kind).is_search:
        best = ranked(trials, spec.mode)
        return Analysis([], None, {}, len(best), best[0] if best else None)
    return analyze(
        Space.from_dict(stage.ranges),
        list(trials),
        spec.mode,
        top=top or spec.fine.top,
        edge=spec.fine.edge,
        pad=spec.fine.pad,
    )


def status_counts(trials: Sequence[TrialRecord]) -> dict[str, int]:
    return dict(Counter(str(t.status) for t in trials))


__all__ = [
    "History",
    "NewStage",
    "NoProposalError",
    "Plan",
    "Resume",
    "StageRequest",
    "Start",
    "analyze_stage",
    "configurations",
    "decide",
    "draws",
    "new_stage",
    "parent",
    "proposal",
    "resumable",
    "sample",
    "seeds_stage",
    "status_counts",
    "successor",
]
