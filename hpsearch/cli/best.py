"""`hpsearch best`: the best trial's chosen checkpoint and its configuration, copied out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpsearch.cli.options import ResultsDbOpt, StudyArg
from hpsearch.cli.report import fmt, out
from storage import DEFAULT_DB


def best(
    study: StudyArg,
    to: Annotated[
        Path,
        typer.Option("--out", "-o", help="A new or empty directory.", show_default=False),
    ],
    db: ResultsDbOpt = DEFAULT_DB,
    stage: Annotated[
        int | None,
        typer.Option(
            "--stage", help="This stage's best trial (default: the latest stage with checkpoints)."
        ),
    ] = None,
) -> None:
    """Copy the best trial's best kept checkpoint into a directory, with params.json."""
    from hpsearch.best import export_best

    chosen = export_best(db, study, to, stage=stage)
    out.print(
        f"{to}: trial {chosen.trial} of stage {chosen.stage.stage_id} at epoch {chosen.epoch} "
        f"({chosen.study.metric} {fmt(chosen.value)}): "
        f"{', '.join(sorted(f.name for f in chosen.files))}, params.json",
        markup=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command()(best)
