"""Build an ensemble from a study's checkpoints: pick the members, read their checkpoints
(sha256 checked), call the spec's `predict` on each, score, record.

Everything is read and predicted before anything is written: a missing or changed checkpoint
file, a broken `predict` or too few checkpoints end with one line and no `ensembles` row. The
`seeds` kind first runs its stage (the API does that through the driver), then scores it here
like any other stage.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpsearch.ensemble import (
    SPLITS,
    EnsembleKind,
    Member,
    Pick,
    checked_prediction,
    epoch_members,
    score,
    top_members,
)
from hpsearch.errors import HpsearchError
from hpsearch.ranking import ranked
from hpsearch.registry import Predict, default_predict, resolve_predict
from hpsearch.space import Space
from hpsearch.spec import FineSettings, StageSettings, StudySpec, load_spec
from storage import (
    ArtifactError,
    ArtifactStore,
    CheckpointRecord,
    EnsembleRecord,
    MemberRecord,
    Mode,
    StageKind,
    StageRecord,
    StageStatus,
    Store,
    StudyRecord,
    describe,
    load_stages,
)

MIN_MEMBERS = 2


@dataclass(frozen=True)
class EnsembleRequest:
    """What `hpsearch ensemble` was asked for."""

    kind: EnsembleKind
    size: int = 5
    split: str = "val"
    stage: int | None = None  # the stage whose trials are members (default: latest finished)
    pick: Pick = Pick.BEST  # `checkpoints` only: the best or the last epochs
    seed: int | None = None  # `seeds` only: draws the new seeds (default: spec seed + stages)

    def check(self) -> None:
        if self.split not in SPLITS:
            raise HpsearchError(f"split: must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 2:
            raise HpsearchError(
                f"size: an ensemble needs >= {MIN_MEMBERS} members, got {self.size}"
            )
        if self.stage is not None and self.stage < 1:
            raise HpsearchError(f"stage: must be >= 1, got {self.stage}")


def spec_for(arg: str, study: StudyRecord, db: str) -> StudySpec:
    """The spec a command named (a file), else one rebuilt from the study's records (a name):
    its trainable, metric and mode, and its latest stage's ranges and fixed values."""
    path = Path(arg)
    if path.suffix == ".toml" or path.is_file():
        return load_spec(path)
    stages = load_stages(db, study.name)
    latest = stages[-1] if stages else None
    if latest is None:
        raise HpsearchError(f"study {study.name!r}: no stages yet in {describe(db)}")
    return StudySpec(
        path=path,
        name=study.name,
        trainable=study.trainable,
        metric=study.metric,
        mode=Mode(study.mode),
        space=Space.from_dict(latest.ranges),
        coarse=StageSettings(trials=1, epochs=latest.epochs),
        fine=FineSettings(trials=1, epochs=latest.epochs),
        fixed=dict(latest.fixed),
        predict=default_predict(study.trainable),
    )


def predict_function(spec: StudySpec) -> Predict:
    """The spec's `predict`, imported (refused with one line when missing or unimportable)."""
    if spec.predict_function is not None:
        return spec.predict_function
    if spec.predict is None:
        where = "the spec" if spec.path.suffix == ".toml" else "a spec file (and name it here)"
        raise HpsearchError(
            f"{spec.path.name}: no `predict` for trainable {spec.trainable!r}: add "
            f'predict = "module:function" at the top of {where}, a function '
            "predict(params, *, checkpoint_dir, split) returning (probabilities, labels)"
        )
    return resolve_predict(spec.predict, spec.directory.resolve())


def study_of(store: Store, spec: StudySpec) -> StudyRecord:
    study = store.study(spec.name)
    if study is None:
        raise HpsearchError(
            f"study {spec.name!r}: no stages yet in {store.db}: run `hpsearch coarse "
            f"{spec.path}` first"
        )
    return study


def source_stage(
    store: Store, spec: StudySpec, study: StudyRecord, stage_id: int | None
) -> StageRecord:
    """`--stage`, else the latest finished coarse or fine stage; it must be finished."""
    if stage_id is None:
        for stage in reversed(store.stages(study.study_id)):
            if StageKind(stage.kind).is_search and stage.status == StageStatus.FINISHED:
                return stage
        raise HpsearchError(
            f"study {study.name!r}: no finished coarse or fine stage in {store.db}: run "
            f"`hpsearch coarse {spec.path}` first"
        )
    found = store.stage(stage_id)
    if found is None or found.study_id != study.study_id:
        raise HpsearchError(f"--stage {stage_id}: no such stage of study {study.name!r}")
    if found.status != StageStatus.FINISHED:
        raise HpsearchError(
            f"--stage {stage_id}: stage {stage_id} is not finished: rerun `hpsearch "
            f"{found.kind} {spec.path}` to finish it"
        )
    return found


def plan_members(
    store: Store, spec: StudySpec, stage: StageRecord, request: EnsembleRequest
) -> tuple[list[Member], str | None]:
    """The members of a `top` or `checkpoints` ensemble (or of a finished `seeds` stage), and
    a note when there are fewer than asked for."""
    best_first = ranked(store.trials(stage.stage_id), spec.mode)
    if not best_first:
        raise HpsearchError(
            f"stage {stage.stage_id}: no trial completed: nothing to build an ensemble from"
        )
    files: dict[int, list[CheckpointRecord]] = {}
    values: dict[int, dict[int, float | None]] = {}  # of an epoch kept twice, the latest's
    for record, value in store.checkpoint_values(stage.stage_id, spec.metric):
        files.setdefault(record.trial_id, []).append(record)
        values.setdefault(record.trial_id, {})[record.epoch] = value
    if not files:
        raise HpsearchError(
            f"stage {stage.stage_id}: no checkpoints recorded: the trainable "
            f"({spec.trainable}) must accept `checkpoint_dir` and write its files there before "
            "yielding each epoch (README: Checkpoints); then rerun the stage"
        )
    mode = Mode(spec.mode)
    if request.kind is EnsembleKind.CHECKPOINTS:
        best = best_first[0]
        own = files.get(best.trial_id, [])
        members = epoch_members(best, own, values.get(best.trial_id, {}), mode, request.size,
                                request.pick)  # fmt: skip
        where = f"trial {best.number} (the best of stage {stage.stage_id})"
        more = "keep_epochs"
    elif request.kind is EnsembleKind.SEEDS:
        members = top_members(best_first, files, values, mode, len(best_first))
        where, more = f"ensemble stage {stage.stage_id}", "keep_trials"
    else:
        members = top_members(best_first, files, values, mode, request.size)
        where, more = f"stage {stage.stage_id}", "keep_trials"
    note = None
    if len(members) < request.size:
        note = (
            f"{where} kept {len(members)} checkpoint(s) for {request.size} members: keep more "
            f"with [checkpoints] {more} in the spec"
        )
    if len(members) < MIN_MEMBERS:
        raise HpsearchError(f"{note} and rerun the stage; an ensemble needs >= {MIN_MEMBERS}")
    return members, note


def predict_members(
    spec: StudySpec,
    stages: dict[int, StageRecord],
    members: Sequence[Member],
    split: str,
    predict: Predict,
) -> tuple[list[tuple[int, int, np.ndarray]], np.ndarray]:
    """Each member's probabilities on `split` (its checkpoint read back, sha256 checked)."""
    predicted: list[tuple[int, int, np.ndarray]] = []
    labels: np.ndarray | None = None
    for member in members:
        trial, stage = member.trial, stages[member.trial.stage_id]
        where = (
            f"predict {spec.predict!r} on trial {trial.number} of stage {stage.stage_id}, "
            f"epoch {member.epoch}"
        )
        params = {**stage.fixed, **Space.from_dict(stage.ranges).typed(trial.params)}
        probs, own = checked_prediction(_predict(predict, params, member, split, where), where)
        if labels is None:
            labels = own
        elif not np.array_equal(labels, own):
            raise HpsearchError(
                f"{where}: returned other labels than the first member's: predict must return "
                f"the {split} split's examples in one fixed order"
            )
        predicted.append((trial.trial_id, member.epoch, probs))
    assert labels is not None  # plan_members gives >= 2 members
    return predicted, labels


def _predict(
    predict: Predict, params: dict[str, Any], member: Member, split: str, where: str
) -> object:
    with tempfile.TemporaryDirectory(prefix="hpsearch-member-") as tmp:
        try:
            store = ArtifactStore(member.files[0].uri.rsplit("/", 1)[0])
            store.materialize(member.files, Path(tmp))
        except ArtifactError as exc:
            raise HpsearchError(
                f"{exc} (trial {member.trial.number} of stage {member.trial.stage_id}, epoch "
                f"{member.epoch}): restore it, or leave that trial out (another --stage, --kind "
                "or --size); nothing was recorded"
            ) from None
        try:
            return predict(params, checkpoint_dir=tmp, split=split)
        except Exception as exc:  # the user's code: its error as one line
            raise HpsearchError(f"{where}: raised {type(exc).__name__}: {exc}") from None


def build(
    store: Store,
    spec: StudySpec,
    study: StudyRecord,
    stage: StageRecord,
    request: EnsembleRequest,
    predict: Predict,
) -> EnsembleRecord:
    """Plan the members of `stage`, predict, score and record the ensemble."""
    members, note = plan_members(store, spec, stage, request)
    predicted, labels = predict_members(spec, {stage.stage_id: stage}, members, request.split,
                                        predict)  # fmt: skip
    scored = score(predicted, labels)
    rows = [(m.trial_id, m.epoch, m.accuracy) for m in scored.members]
    ensemble_id = store.record_ensemble(
        study.study_id, stage.stage_id, request.kind, request.split, scored.accuracy, rows
    )
    results = tuple(
        MemberRecord(m.trial.trial_id, m.trial.number, m.epoch, s.accuracy)
        for m, s in zip(members, scored.members, strict=True)
    )
    return EnsembleRecord(
        ensemble_id,
        stage.stage_id,
        str(request.kind),
        len(results),
        request.split,
        scored.accuracy,
        scored.best_member_accuracy,
        results,
        note,
    )


__all__ = [
    "EnsembleRequest",
    "build",
    "plan_members",
    "predict_function",
    "predict_members",
    "source_stage",
    "spec_for",
    "study_of",
]
