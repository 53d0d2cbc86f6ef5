"""The Python API: run coarse and fine stages from a notebook or a script, as the CLI does.

    study = Study.from_spec("study.toml", db="results.db")   # or a dict with the TOML's keys
    stage = study.coarse(trials=200, epochs=3)
    fine = study.fine()
    df = study.trials()

The CLI's `coarse` and `fine` are thin layers over `Study.run`; errors are `HpsearchError`s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hpsearch.asha import SCHEDULES
from hpsearch.checkpoints import Checkpointing, artifact_location, checkpointing_wanted
from hpsearch.driver import ProgressCallback, StageOutcome, execute, plan_stage
from hpsearch.ensemble import EnsembleKind, Pick
from hpsearch.ensemble_run import (
    EnsembleRequest,
    build,
    predict_function,
    source_stage,
    study_of,
)
from hpsearch.errors import DatabaseError, HpsearchError, SpecError
from hpsearch.lease import check_free, stage_lease
from hpsearch.narrowing import split_proposal
from hpsearch.planner import Plan, Resume, StageRequest, resumable, seeds_stage
from hpsearch.ranking import ranked
from hpsearch.registry import qualified, resolve
from hpsearch.runtime.cluster import check_cluster
from hpsearch.runtime.executor import (
    Executor,
    InProcessExecutor,
    RayExecutor,
    RayOptions,
    Workload,
)
from hpsearch.spec import StudySpec, load_spec, parse_spec
from hpsearch.summary import best_json, flag_json
from storage import (
    DEFAULT_DB,
    ArtifactStore,
    EnsembleRecord,
    StageKind,
    StorageError,
    Store,
    StudyRecord,
    TrialRecord,
    load_trials,
)

if TYPE_CHECKING:
    import pandas as pd

ExecutorName = Literal["ray", "local"]


@dataclass(frozen=True)
class StageResult:
    """A finished stage; `best`, `flags`, `proposal` and `reasons` as `show --json` has them."""

    stage_id: int
    kind: str
    parent: int | None
    trials: int
    epochs: int
    seed: int
    resumed: bool  # an unfinished stage was finished rather than a new one started
    counts: dict[str, int]  # trials by status
    best: dict[str, Any] | None  # trial, trial_id, value, epoch, params; None: none completed
    flags: list[dict[str, Any]]  # param, side, value, position, message
    proposal: dict[str, Any] | None  # the next stage's ranges; None: nothing completed
    reasons: dict[str, str]  # why each proposed range is what it is
    top: tuple[TrialRecord, ...]  # completed trials, best first (at most 10)

    @classmethod
    def of(cls, outcome: StageOutcome) -> StageResult:
        stage = outcome.stage
        proposal, reasons = split_proposal(stage.proposal)
        return cls(
            stage_id=stage.stage_id,
            kind=stage.kind,
            parent=stage.parent_stage_id,
            trials=stage.n_trials,
            epochs=stage.epochs,
            seed=stage.seed,
            resumed=outcome.resumed,
            counts=dict(outcome.counts),
            best=best_json(outcome.top[0]) if outcome.top else None,
            flags=[flag_json(f) for f in outcome.analysis.flags],
            proposal=proposal,
            reasons=reasons,
            top=tuple(outcome.top),
        )


class Study:
    """A study spec and the database its stages go to (checkpoints: to `artifacts`, by default
    the directory beside a SQLite file, `results.db` -> `results.artifacts/`)."""

    def __init__(
        self,
        spec: StudySpec,
        db: str | os.PathLike[str] = DEFAULT_DB,
        *,
        artifacts: str | os.PathLike[str] | None = None,
    ) -> None:
        self.spec = spec
        self.db = str(db)
        self.artifacts = None if artifacts is None else str(artifacts)
        with _database_errors():
            self.store = Store(self.db)

    @classmethod
    def from_spec(
        cls,
        spec: str | os.PathLike[str] | Mapping[str, Any],
        db: str | os.PathLike[str] = DEFAULT_DB,
        *,
        address: str | None = None,
        artifacts: str | os.PathLike[str] | None = None,
    ) -> Study:
        """From a TOML file, or a dict with the TOML's keys (whose `trainable` may be a
        generator function); checked like the CLI checks it before anything runs. With
        `address`, that Ray cluster is checked before the database is opened or created;
        `artifacts` is where checkpoints go (a directory or an fsspec URL)."""
        if isinstance(spec, str | os.PathLike):
            study_spec = load_spec(Path(spec))
        elif isinstance(spec, Mapping):
            study_spec = parse_spec(dict(spec), Path("spec"))
        else:
            raise SpecError(f"spec: must be a TOML file path or a dict, got {type(spec).__name__}")
        if study_spec.function is None:
            resolve(study_spec.trainable, study_spec.directory.resolve())
        check_cluster(address)
        return cls(study_spec, db, artifacts=artifacts)

    @property
    def name(self) -> str:
        return self.spec.name

    def coarse(
        self,
        *,
        trials: int | None = None,
        epochs: int | None = None,
        seed: int | None = None,
        widen: bool = False,
        address: str | None = None,
        cpus: int | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        max_retries: int = 2,
        trial_timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        executor: ExecutorName = "ray",
        schedule: str | None = None,
    ) -> StageResult:
        """Run (or resume) a coarse stage; `widen`: on the latest finished stage's proposal;
        `schedule` ("asha" or "none") overrides the spec's."""
        request = StageRequest(
            StageKind.COARSE,
            self.spec.coarse.trials if trials is None else trials,
            self.spec.coarse.epochs if epochs is None else epochs,
            seed,
            widen=widen,
            schedule=schedule,
        )
        timeout = self.spec.coarse.trial_timeout if trial_timeout is None else trial_timeout
        options = RayOptions(
            address, cpus, cpus_per_trial, gpus_per_trial, max_retries, trial_timeout=timeout
        )
        return self.run(request, options, on_progress=on_progress, executor=executor)

    def fine(
        self,
        *,
        trials: int | None = None,
        epochs: int | None = None,
        seed: int | None = None,
        from_stage: int | None = None,
        top: int | None = None,
        address: str | None = None,
        cpus: int | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        max_retries: int = 2,
        trial_timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        executor: ExecutorName = "ray",
        schedule: str | None = None,
    ) -> StageResult:
        """Run (or resume) a fine stage on the proposal of the latest finished coarse stage
        (or of `from_stage`; `top` recomputes that proposal from the best `top` trials)."""
        request = StageRequest(
            StageKind.FINE,
            self.spec.fine.trials if trials is None else trials,
            self.spec.fine.epochs if epochs is None else epochs,
            seed,
            from_stage=from_stage,
            top=top,
            schedule=schedule,
        )
        timeout = self.spec.fine.trial_timeout if trial_timeout is None else trial_timeout
        options = RayOptions(
            address, cpus, cpus_per_trial, gpus_per_trial, max_retries, trial_timeout=timeout
        )
        return self.run(request, options, on_progress=on_progress, executor=executor)

    def run(
        self,
        request: StageRequest,
        options: RayOptions | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        executor: ExecutorName = "ray",
    ) -> StageResult:
        """Plan (before Ray starts: a bad request changes nothing), run, finish the stage.

        Ctrl-C propagates as KeyboardInterrupt once the results so far are committed.
        """
        options = options or RayOptions()
        _check_request(request, options)
        spec = scheduled(self.spec, request)
        with _database_errors():
            plan = plan_stage(self.store, spec, request)
            check_free(self.store, spec, request, plan)  # another driver's: before Ray
            outcome = self._execute(plan, options, on_progress, executor, spec=spec, lease=request)
        return StageResult.of(outcome)

    def _execute(
        self,
        plan: Plan,
        options: RayOptions,
        on_progress: ProgressCallback | None,
        executor: ExecutorName,
        checkpoints: Checkpointing | None = None,
        spec: StudySpec | None = None,
        lease: StageRequest | None = None,
    ) -> StageOutcome:
        """Run the planned stage (of `spec`, default this study's: e.g. with `--schedule`
        applied); checkpoints as the spec says unless `checkpoints` is given. With `lease` (the
        request of a coarse or fine stage) the stage's lease is held while it runs, taken once
        Ray is up (see `hpsearch.lease`)."""
        spec = spec or self.spec
        checkpoints = checkpoints or self._checkpointing()  # a server db without --artifacts: here
        runner = self._executor(executor, options)
        try:
            if lease is None:
                return execute(self.store, spec, plan, runner, on_progress, checkpoints)
            with stage_lease(self.store, spec, lease, plan) as plan:
                return execute(self.store, spec, plan, runner, on_progress, checkpoints)
        finally:
            runner.close()

    def ensemble(
        self,
        kind: str,
        *,
        size: int = 5,
        split: str = "val",
        stage: int | None = None,
        pick: str = "best",
        seed: int | None = None,
        address: str | None = None,
        cpus: int | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        max_retries: int = 2,
        on_progress: ProgressCallback | None = None,
        executor: ExecutorName = "ray",
    ) -> EnsembleRecord:
        """Build, score and record an ensemble, as `hpsearch ensemble` does.

        `kind`: "top" (the best `size` trials of `stage`, default the latest finished coarse
        or fine stage), "checkpoints" (`size` checkpoints of its best trial: the `pick`
        "best" or "last" epochs) or "seeds" (runs the best configuration with `size` new
        seeds as a stage of kind `ensemble`, resumed if unfinished, then scores it).
        """
        request = _ensemble_request(kind, size, split, stage, pick, seed)
        options = RayOptions(address, cpus, cpus_per_trial, gpus_per_trial, max_retries)
        predict = predict_function(self.spec)  # a missing predict fails before anything runs
        with _database_errors():
            study = study_of(self.store, self.spec)
            if request.kind is not EnsembleKind.SEEDS:
                source = source_stage(self.store, self.spec, study, request.stage)
                return build(self.store, self.spec, study, source, request, predict)
            _check_request(StageRequest(StageKind.ENSEMBLE, size, 1, seed), options)
            plan = self._seeds_plan(study, request)
            keep = plan.stage.n_trials if isinstance(plan, Resume) else len(plan.seeds)
            checkpoints = self._every_trial_keeps(keep)
            outcome = self._execute(plan, options, on_progress, executor, checkpoints)
            return build(self.store, self.spec, study, outcome.stage, request, predict)

    def _every_trial_keeps(self, trials: int) -> Checkpointing:
        """Checkpointing for an ensemble stage: each of its `trials` members keeps its own,
        whatever `[checkpoints] keep_trials` says (refused when checkpoints are off)."""
        settings = self.spec.checkpoints
        spec = replace(
            self.spec, checkpoints=replace(settings, keep_trials=max(settings.keep_trials, trials))
        )
        fn = spec.function or resolve(spec.trainable, spec.directory.resolve())
        if settings.keep_trials == 0 or not checkpointing_wanted(spec, fn):
            raise HpsearchError(
                f"ensemble --kind seeds: {spec.trainable} keeps no checkpoints (it must accept "
                "`checkpoint_dir`, and [checkpoints] keep_trials must be > 0): nothing to combine"
            )
        return Checkpointing(spec, fn, ArtifactStore(artifact_location(self.db, self.artifacts)))

    def _seeds_plan(self, study: StudyRecord, request: EnsembleRequest) -> Plan:
        """Resume the unfinished ensemble stage, else one on the source stage's best trial."""
        stages = self.store.stages(study.study_id)
        pending = resumable(stages, StageKind.ENSEMBLE)
        if pending is not None:
            return Resume(pending)
        source = source_stage(self.store, self.spec, study, request.stage)
        best = ranked(self.store.trials(source.stage_id), self.spec.mode)
        if not best:
            raise HpsearchError(
                f"stage {source.stage_id}: no trial completed: no best configuration"
            )
        seed = request.seed if request.seed is not None else self.spec.seed + len(stages)
        return seeds_stage(source, best[0], request.size, seed)

    def trials(self, *, stage: int | None = None, status: str | None = None) -> pd.DataFrame:
        """One row per trial (as `storage.load_trials`): best value, epoch, one column per
        parameter."""
        with _database_errors():
            return load_trials(self.db, self.spec.name, stage=stage, status=status)

    def best_checkpoint(self, out: str | os.PathLike[str], *, stage: int | None = None) -> Path:
        """Copy the best trial's chosen checkpoint (its best kept epoch) with `params.json`
        into `out` (a new or empty directory), as `hpsearch best --out`; returns `out`."""
        from hpsearch.best import export_best

        with _database_errors():
            export_best(self.db, self.spec.name, Path(out), stage=stage)
        return Path(out)

    def close(self) -> None:
        self.store.close()

    def _checkpointing(self) -> Checkpointing | None:
        """Checkpoints of this study's stages, when the spec keeps them and the trainable
        accepts `checkpoint_dir`; the artifact store is checked before Ray starts."""
        spec = self.spec
        fn = spec.function or resolve(spec.trainable, spec.directory.resolve())
        if not checkpointing_wanted(spec, fn):
            return None
        location = artifact_location(self.db, self.artifacts)
        return Checkpointing(spec, fn, ArtifactStore(location))

    def _executor(self, name: ExecutorName, options: RayOptions) -> Executor:
        spec = self.spec
        workload = Workload(
            qualified(spec.trainable), spec.metric, spec.directory.resolve(), spec.function
        )
        if name == "local":
            return InProcessExecutor(workload)
        if name != "ray":
            raise HpsearchError(f"executor: must be 'ray' or 'local', got {name!r}")
        check_cluster(options.address)  # a bad address fails here, before the database changes
        return RayExecutor(workload, options)  # refuses impossible resource requests


def scheduled(spec: StudySpec, request: StageRequest) -> StudySpec:
    """The spec with the request's `schedule` (asha/none) for the stage kind it runs."""
    if request.schedule is None:
        return spec
    if request.schedule not in SCHEDULES:
        raise HpsearchError(f"schedule: must be 'asha' or 'none', got {request.schedule!r}")
    name = "coarse" if request.kind is StageKind.COARSE else "fine"
    settings = getattr(spec, name)
    schedule = replace(settings.schedule, kind=request.schedule)
    return replace(spec, **{name: replace(settings, schedule=schedule)})


_LIMITS = (
    ("trials", 1),
    ("epochs", 1),
    ("seed", 0),
    ("from_stage", 1),
    ("top", 1),
)


def _ensemble_request(
    kind: str, size: int, split: str, stage: int | None, pick: str, seed: int | None
) -> EnsembleRequest:
    """The request, each value checked (one line naming the bad one)."""
    choices = (("kind", kind, EnsembleKind), ("pick", pick, Pick))
    for name, value, allowed in choices:
        if value not in tuple(allowed):
            raise HpsearchError(f"{name}: must be one of {', '.join(allowed)}, got {value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise HpsearchError(f"seed: must be >= 0, got {seed!r}")
    request = EnsembleRequest(EnsembleKind(kind), size, split, stage, Pick(pick), seed)
    request.check()
    return request


def _check_request(request: StageRequest, options: RayOptions) -> None:
    """The CLI's option limits, for callers of the API (one line naming the option)."""
    values: list[tuple[str, Any, float]] = [
        (name, getattr(request, name), low) for name, low in _LIMITS
    ]
    values += [
        ("cpus", options.cpus, 1),
        ("cpus_per_trial", options.cpus_per_trial, 0.01),
        ("gpus_per_trial", options.gpus_per_trial, 0),
        ("max_retries", options.max_retries, 0),
        ("trial_timeout", options.trial_timeout, 0.01),
    ]
    for name, value, low in values:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            raise HpsearchError(f"{name}: must be >= {low}, got {value!r}")


@contextmanager
def _database_errors() -> Iterator[None]:
    """Storage problems as an HpsearchError (same one-line message)."""
    try:
        yield
    except StorageError as exc:
        raise DatabaseError(str(exc)) from exc


__all__ = ["StageResult", "Study"]
