"""Arguments and options shared by the command groups (a leaf module: imports only typer)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

SpecArg = Annotated[Path, typer.Argument(help="Study spec (TOML).", show_default=False)]
StudyArg = Annotated[
    str, typer.Argument(help="Study spec (TOML) or study name.", show_default=False)
]
DbOpt = Annotated[
    str,
    typer.Option("--db", envvar="HPSEARCH_DB", help="SQLite path or SQLAlchemy URL."),
]
ResultsDbOpt = Annotated[
    str,
    typer.Option("--db", envvar="HPSEARCH_DB", help="SQLite path or SQLAlchemy URL (read-only)."),
]
ArtifactsOpt = Annotated[
    str | None,
    typer.Option(
        "--artifacts",
        envvar="HPSEARCH_ARTIFACTS",
        help="Where checkpoints go: a directory or an fsspec URL (s3://, gs://); "
        "default: results.artifacts/ beside a SQLite --db.",
    ),
]
TrialsOpt = Annotated[
    int | None,
    typer.Option(
        min=1, help="Trials (default: spec); under ASHA: trials x epochs is the epoch budget."
    ),
]
EpochsOpt = Annotated[int | None, typer.Option(min=1, help="Epochs per trial (default: spec).")]
SeedOpt = Annotated[
    int | None, typer.Option(min=0, help="Sampling seed (default: spec seed + stage count).")
]
AddressOpt = Annotated[
    str | None,
    typer.Option(envvar="RAY_ADDRESS", help="Ray cluster HOST:PORT (default: start local Ray)."),
]
CpusOpt = Annotated[int | None, typer.Option(min=1, help="CPUs of the local Ray (default: all).")]
CpusPerTrialOpt = Annotated[float, typer.Option(min=0.01, help="CPUs per trial.")]
GpusPerTrialOpt = Annotated[float, typer.Option(min=0.0, help="GPUs per trial.")]
RetriesOpt = Annotated[int, typer.Option(min=0, help="Retries of a trial whose worker died.")]
TrialTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        min=0.01,
        help="Seconds a trial may run; past it the trial is stopped and fails "
        "(default: the spec's trial_timeout, else none).",
    ),
]
KeepLogsOpt = Annotated[
    bool,
    typer.Option("--keep-logs", help="Keep the session directory (logs) of a local Ray."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")]
WidenOpt = Annotated[
    bool,
    typer.Option(
        "--widen",
        help="Sample the ranges proposed by the latest finished stage (after an edge flag).",
    ),
]
FromStageOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Stage whose proposal to use (default: latest finished coarse)."),
]
TopOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Recompute the proposal from the best K trials (default: spec)."),
]


class ScheduleName(StrEnum):
    asha = "asha"
    none = "none"


ScheduleOpt = Annotated[
    ScheduleName | None,
    typer.Option(help="asha: stop hopeless trials at rungs; none: run all (default: spec)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (a stable interface).")]
StageOpt = Annotated[int | None, typer.Option("--stage", help="Only this stage (its id).")]


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
