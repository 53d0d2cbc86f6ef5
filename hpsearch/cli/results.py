"""Reading results: `hpsearch sql`, `hpsearch trials`, `hpsearch export` (never write the db)."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hpsearch.cli.options import Format, FormatOpt, ResultsDbOpt, StageOpt, StudyArg
from hpsearch.cli.report import err, fmt, out
from hpsearch.errors import HpsearchError
from hpsearch.lookup import study_name_from_arg
from storage import (
    DEFAULT_DB,
    FINAL_STATUSES,
    TRIAL_COLUMNS,
    QueryResult,
    StudyRecord,
    find_study,
    iter_metrics,
    load_trials,
    run_sql,
)

if TYPE_CHECKING:  # pandas is imported where used: it costs ~0.3 s at CLI start
    import pandas as pd

STATUSES = ("pending", "running", *FINAL_STATUSES)
TRIAL_VIEW = TRIAL_COLUMNS[: TRIAL_COLUMNS.index("epochs_run") + 1]  # the outcome, no times


def plain(value: Any) -> Any:
    """A JSON/CSV-friendly Python value: NaN/inf and missing become None, times ISO strings."""
    import pandas as pd

    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return value


def frame_result(frame: pd.DataFrame) -> QueryResult:
    rows = [tuple(plain(v) for v in row) for row in frame.itertuples(index=False, name=None)]
    return QueryResult([str(c) for c in frame.columns], rows)


def emit(result: QueryResult, form: Format, title: str | None = None) -> None:
    """Print rows as a rich table, CSV with a header row, or a JSON array of objects."""
    if form is Format.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([[_csv_cell(v) for v in row] for row in result.rows])
    elif form is Format.json:
        records = [dict(zip(result.columns, map(plain, row), strict=True)) for row in result.rows]
        sys.stdout.write(json.dumps(records, indent=1) + "\n")
    else:
        table = _table(result, title)
        if out.is_terminal:
            out.print(table)
        else:  # piped: as wide as the table needs, not 80 columns
            width = Console(width=100_000).measure(table).maximum
            Console(highlight=False, width=max(width, 20)).print(table)


def _csv_cell(value: Any) -> Any:
    value = plain(value)
    return "" if value is None else value


def _table(result: QueryResult, title: str | None) -> Table:
    table = Table(
        title=title, caption=f"{len(result.rows)} row{'' if len(result.rows) == 1 else 's'}"
    )
    for column in result.columns:
        table.add_column(column, overflow="fold")
    for row in result.rows:
        table.add_row(*("NULL" if v is None else fmt(plain(v)) for v in row))
    return table


def _study(db: str, arg: str) -> StudyRecord:
    return find_study(db, study_name_from_arg(arg))


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise HpsearchError(f"--status: must be one of {', '.join(STATUSES)}, got {status!r}")


def sql(
    query: Annotated[
        str, typer.Argument(help="One SQL statement (read-only).", show_default=False)
    ],
    db: ResultsDbOpt = DEFAULT_DB,
    form: FormatOpt = Format.table,
) -> None:
    """Run one read-only SQL query on the results; writes are refused and change nothing."""
    emit(run_sql(db, query), form)


def trials(
    study: StudyArg,
    db: ResultsDbOpt = DEFAULT_DB,
    stage: StageOpt = None,
    status: Annotated[
        str | None, typer.Option(help=f"Only this status ({', '.join(STATUSES)}).")
    ] = None,
    top: Annotated[
        int | None, typer.Option(min=1, help="Only the best K completed trials.")
    ] = None,
    form: FormatOpt = Format.table,
) -> None:
    """One row per trial with its best value and one column per parameter."""
    _check_status(status)
    record = _study(db, study)
    frame = load_trials(db, record.name, stage=stage, status=status, top=top)
    params = [c for c in frame.columns if c not in TRIAL_COLUMNS]
    title = f"{record.name}: {len(frame)} trials ({record.metric}, {record.mode})"
    emit(frame_result(frame[TRIAL_VIEW + params]), form, title)


def export(
    study: StudyArg,
    path: Annotated[
        Path, typer.Option("--out", "-o", help="FILE.csv or FILE.parquet.", show_default=False)
    ],
    db: ResultsDbOpt = DEFAULT_DB,
    stage: StageOpt = None,
    metrics: Annotated[
        bool, typer.Option("--metrics", help="The long per-epoch metrics table instead.")
    ] = False,
) -> None:
    """Write trials (one column per parameter) or per-epoch metrics to CSV or Parquet."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise HpsearchError(f"--out {path}: must end in .csv or .parquet, got {suffix or 'none'!r}")
    if not path.parent.is_dir():
        raise HpsearchError(f"--out {path}: directory {path.parent} does not exist")
    record = _study(db, study)
    if metrics:
        frames = iter_metrics(db, record.name, stage=stage)
    else:
        frames = iter([load_trials(db, record.name, stage=stage)])
    rows = _write(frames, path, suffix)
    what = "metric rows" if metrics else "trials"
    err.print(f"wrote {rows} {what} of {record.name} to {path}", markup=False)


def _write(frames: Iterator[pd.DataFrame], path: Path, suffix: str) -> int:
    """Write the frames one after another into one CSV or Parquet file; returns the row count."""
    try:
        if suffix == ".csv":
            return _write_csv(frames, path)
        return _write_parquet(frames, path)
    except ImportError as exc:
        raise HpsearchError(f"--out {path}: parquet needs pyarrow: pip install pyarrow") from exc
    except OSError as exc:
        raise HpsearchError(f"--out {path}: cannot write ({exc.strerror or exc})") from None


def _write_csv(frames: Iterator[pd.DataFrame], path: Path) -> int:
    rows = 0
    with path.open("w", newline="") as file:
        for frame in frames:
            frame.to_csv(file, index=False, header=rows == 0)
            rows += len(frame)
    return rows


def _write_parquet(frames: Iterator[pd.DataFrame], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, writer = 0, None
    try:
        for frame in frames:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
            rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    return rows


def register(app: typer.Typer) -> None:
    app.command()(sql)
    app.command()(trials)
    app.command()(export)
