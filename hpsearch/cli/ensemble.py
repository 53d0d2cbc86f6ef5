"""`hpsearch ensemble`: average the class probabilities of several checkpoints of a study."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from hpsearch.cli.options import (
    AddressOpt,
    ArtifactsOpt,
    CpusOpt,
    CpusPerTrialOpt,
    DbOpt,
    GpusPerTrialOpt,
    QuietOpt,
    RetriesOpt,
    SeedOpt,
    StudyArg,
)
from hpsearch.cli.report import Timer, err, out
from hpsearch.errors import Terminated
from storage import DEFAULT_DB

if TYPE_CHECKING:  # numpy, SQLAlchemy and the driver: not for `--help`
    from hpsearch.api import Study
    from storage import EnsembleRecord


class Kind(StrEnum):
    top = "top"
    seeds = "seeds"
    checkpoints = "checkpoints"


class Split(StrEnum):
    val = "val"
    test = "test"


class PickChoice(StrEnum):
    best = "best"
    last = "last"


KindOpt = Annotated[
    Kind,
    typer.Option(
        "--kind",
        help="top: the best K trials; seeds: the best configuration with K new seeds (runs a "
        "stage); checkpoints: K checkpoints of the best trial.",
        show_default=False,
    ),
]
SizeOpt = Annotated[int, typer.Option("--size", min=2, help="Members (K).")]
FromOpt = Annotated[
    int | None,
    typer.Option(
        "--stage", min=1, help="Stage whose trials are used (default: latest finished search)."
    ),
]
SplitOpt = Annotated[Split, typer.Option("--split", help="The split the members predict.")]
PickOpt = Annotated[
    PickChoice, typer.Option("--pick", help="checkpoints: the best or the last kept epochs.")
]


def ensemble(
    study: StudyArg,
    kind: KindOpt,
    size: SizeOpt = 5,
    stage: FromOpt = None,
    split: SplitOpt = Split.val,
    pick: PickOpt = PickChoice.best,
    db: DbOpt = DEFAULT_DB,
    seed: SeedOpt = None,
    address: AddressOpt = None,
    cpus: CpusOpt = None,
    cpus_per_trial: CpusPerTrialOpt = 1.0,
    gpus_per_trial: GpusPerTrialOpt = 0.0,
    max_retries: RetriesOpt = 2,
    artifacts: ArtifactsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Build an ensemble from a study's checkpoints, print each member's accuracy and the gain."""
    timer = Timer()
    handle = open_study(study, db, artifacts)
    try:
        result = handle.ensemble(
            kind.value, size=size, split=split.value, stage=stage, pick=pick.value, seed=seed,
            address=address, cpus=cpus, cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial, max_retries=max_retries,
        )  # fmt: skip
    except KeyboardInterrupt as stop:  # only a seeds stage runs long enough to be stopped
        why, code = (
            ("terminated (SIGTERM)", 143) if isinstance(stop, Terminated) else ("interrupted", 130)
        )
        err.print(f"hpsearch: {why}; the stage's results so far are saved: rerun the command "
                  "to resume it", soft_wrap=True)  # fmt: skip
        raise typer.Exit(code) from None
    finally:
        handle.close()
    if result.note:
        err.print(f"note: {result.note}", markup=False, soft_wrap=True)
    if not quiet:
        out.print(member_table(result))
    out.print(summary(result, timer.seconds), markup=False, soft_wrap=True)


def open_study(arg: str, db: str, artifacts: str | None = None) -> Study:
    """The study of a spec file or a name, in a database that must already hold it (read-only
    look-up first: a wrong name or path creates and changes nothing)."""
    from hpsearch.api import Study
    from hpsearch.ensemble_run import spec_for
    from hpsearch.lookup import study_from_arg

    record = study_from_arg(db, arg)
    return Study(spec_for(arg, record, db), db, artifacts=artifacts)


def summary(result: EnsembleRecord, seconds: float) -> str:
    points = 100 * result.gain
    return (
        f"ensemble {result.ensemble_id} ({result.kind}, {result.size} members of stage "
        f"{result.stage_id}, {result.split}): accuracy {result.accuracy:.4f}, best member "
        f"{result.best_member_accuracy:.4f}, gain {points:+.2f} points ({seconds:.1f}s)"
    )


def member_table(result: EnsembleRecord) -> object:
    from rich.table import Table

    table = Table(title=f"Ensemble {result.ensemble_id}: {result.kind}, {result.split} split")
    for column in ("member", "stage", "trial", "epoch", "accuracy"):
        table.add_column(column, justify="right")
    for i, m in enumerate(result.members, start=1):
        table.add_row(str(i), str(result.stage_id), str(m.trial), str(m.epoch), f"{m.accuracy:.4f}")
    table.add_section()
    table.add_row("ensemble", "", "", "", f"{result.accuracy:.4f}")
    table.add_row("gain", "", "", "", f"{100 * result.gain:+.2f} pt")
    return table


def register(app: typer.Typer) -> None:
    app.command()(ensemble)
