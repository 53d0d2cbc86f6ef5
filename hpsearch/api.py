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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hpsearch.checkpoints import Checkpointing, artifact_location, checkpointing_wanted
from hpsearch.driver import ProgressCallback, StageOutcome, execute, plan_stage
from hpsearch.errors import DatabaseError, HpsearchError, SpecError
from hpsearch.narrowing import split_proposal
from hpsearch.planner import StageRequest
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
    StageKind,
    StorageError,
    Store,
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
        on_progress: ProgressCallback | None = None,
        executor: ExecutorName = "ray",
    ) -> StageResult:
        """Run (or resume) a coarse stage; `widen`: on the latest finished stage's proposal."""
        request = StageRequest(
            StageKind.COARSE,
            self.spec.coarse.trials if trials is None else trials,
            self.spec.coarse.epochs if epochs is None else epochs,
            seed,
            widen=widen,
        )
        options = RayOptions(address, cpus, cpus_per_trial, gpus_per_trial, max_retries)
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
        on_progress: ProgressCallback | None = None,
        executor: ExecutorName = "ray",
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
        )
        options = RayOptions(address, cpus, cpus_per_trial, gpus_per_trial, max_retries)
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
        with _database_errors():
            plan = plan_stage(self.store, self.spec, request)
            checkpoints = self._checkpointing()  # a server database without --artifacts: here
            runner = self._executor(executor, options)
            try:
                outcome = execute(self.store, self.spec, plan, runner, on_progress, checkpoints)
            finally:
                runner.close()
        return StageResult.of(outcome)

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


_LIMITS = (
    ("trials", 1),
    ("epochs", 1),
    ("seed", 0),
    ("from_stage", 1),
    ("top", 1),
)


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
