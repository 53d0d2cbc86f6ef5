"""What to tell the user when a stage ends: every flag as a warning, then the next command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpsearch.cli.report import err, out
from storage import DEFAULT_DB, StageKind

if TYPE_CHECKING:
    from hpsearch.api import StageResult
    from hpsearch.spec import StudySpec


def db_suffix(db: str) -> str:
    """` --db X` unless X is the default database (as named by `Store.db`)."""
    from storage import describe

    try:
        default = describe(DEFAULT_DB)
    except OSError:  # the working directory is gone (e.g. a finished Ray job's copy)
        return f" --db {db}"
    return "" if db == default else f" --db {db}"


def next_command(spec: StudySpec, db: str, stage: StageResult) -> str:
    """The command to run after this stage, with a short why."""
    target = f"{spec.path}{db_suffix(db)}"
    if stage.proposal is None:
        return f"hpsearch coarse {target}   # nothing completed: fix the trainable first"
    widen = any(f["side"] == "scale" or "widen the range" in f["message"] for f in stage.flags)
    if widen:
        return (
            f"hpsearch coarse {target} --widen   # a range was wrong; or go on with: "
            f"hpsearch fine {target}"
        )
    if stage.kind == StageKind.COARSE:
        return f"hpsearch fine {target}"
    again = f"hpsearch fine {target} --from-stage {stage.stage_id}"
    return f"hpsearch show {target}   # or refine again: {again}"


def print_advice(spec: StudySpec, db: str, stage: StageResult) -> None:
    for flag in stage.flags:
        err.print(f"warning: {flag['message']}", markup=False, soft_wrap=True)
    out.print(f"next: {next_command(spec, db, stage)}", markup=False, soft_wrap=True)
