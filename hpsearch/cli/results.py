"""Reading results: `hpsearch sql`, `hpsearch trials`, `hpsearch export` (never write the db)."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hpsearch.cli.options import Format, FormatOpt, ResultsDbOpt, StageOpt, StudyArg
from hpsearch.cli.report import err, fmt, out
from hpsearch.errors import HpsearchError
from storage import DEFAULT_DB, TRIAL_COLUMNS, QueryResult, Status

if TYPE_CHECKING:  # pandas and SQLAlchemy are imported where used: they cost ~0.5 s at start
    import pandas as pd

    from storage import Reader

STATUSES = tuple(Status)
TABLE_ROWS = 10_000  # a table needs every row for its widths: sql shows at most these
SQL_OPTIONS_WITH_VALUE = ("--db", "--format", "-f", "--timeout")
TRIAL_VIEW = TRIAL_COLUMNS[: TRIAL_COLUMNS.index("epochs_run") + 1]  # the outcome, no times


def plain(value: Any) -> Any:
    """A JSON/CSV-friendly Python value: NaN/inf and missing become None, times ISO strings."""
    pd = sys.modules.get("pandas")  # its missing values only come from frames: once it is loaded
    if value is None or (pd is not None and (value is pd.NaT or value is pd.NA)):
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
    emit_rows(result.columns, result.rows, form, title)


def emit_rows(
    columns: list[str],
    rows: Iterable[tuple[Any, ...]],
    form: Format,
    title: str | None = None,
    table_rows: int | None = None,
) -> None:
    """`emit` for rows that arrive one by one: CSV and JSON are written as they come; a
    table, which needs all rows for its column widths, keeps at most `table_rows`."""
    if form is Format.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(v) for v in row])
    elif form is Format.json:
        _json_array(columns, rows)
    else:
        kept = list(itertools.islice(rows, table_rows + 1)) if table_rows else list(rows)
        more = table_rows is not None and len(kept) > table_rows
        table = _table(QueryResult(columns, kept[:table_rows] if more else kept), title)
        if out.is_terminal:
            out.print(table)
        else:  # piped: as wide as the table needs, not 80 columns
            width = Console(width=100_000).measure(table).maximum
            Console(highlight=False, width=max(width, 20)).print(table)
        if more:
            err.print(
                f"note: the first {table_rows} rows; more not fetched "
                "(--format csv or json prints all)"
            )


def _json_array(columns: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
    """The text of `json.dumps(records, indent=1)`, one record at a time."""
    first = True
    for row in rows:
        record = json.dumps(dict(zip(columns, map(plain, row), strict=True)), indent=1)
        sys.stdout.write(("[\n" if first else ",\n") + textwrap.indent(record, " "))
        first = False
    sys.stdout.write("[]\n" if first else "\n]\n")


def _csv_cell(value: Any) -> Any:
    value = plain(value)
    return "" if value is None else value


def _table(result: QueryResult, title: str | None) -> Table:
    caption = f"{len(result.rows)} row{'' if len(result.rows) == 1 else 's'}"
    table = Table(title=title, caption=caption)
    for column in result.columns:
        table.add_column(column, overflow="fold")
    for row in result.rows:
        table.add_row(*("NULL" if v is None else fmt(plain(v)) for v in row))
    return table


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise HpsearchError(f"--status: must be one of {', '.join(STATUSES)}, got {status!r}")


def sql(
    query: Annotated[
        str,
        typer.Argument(
            help="One SQL statement (read-only); - reads it from stdin.", show_default=False
        ),
    ],
    db: ResultsDbOpt = DEFAULT_DB,
    form: FormatOpt = Format.table,
    timeout: Annotated[
        float, typer.Option(min=0, help="Stop the query after this many seconds (0: never).")
    ] = 60.0,
) -> None:
    """Run one read-only SQL query on the results; writes are refused and change nothing.

    Rows stream to the output (a table shows the first 10000); Ctrl-C stops the query.
    """
    query = sys.stdin.read() if query == "-" else comment_line_breaks(query)
    from storage import check_query, read_only

    check_query(query)
    try:
        with read_only(db) as reader, _interrupt_on_ctrl_c(reader):
            result = reader.stream(query, timeout=timeout or None)
            with closing(result.rows) as rows:
                emit_rows(result.columns, rows, form, table_rows=TABLE_ROWS)
    except KeyboardInterrupt:
        err.print("hpsearch: interrupted: the query was stopped (the database is unchanged)")
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        raise typer.Exit(0) from None


@contextmanager
def _interrupt_on_ctrl_c(reader: Reader) -> Iterator[None]:
    """Ctrl-C stops the running query, also while SQLite is busy inside one statement."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: reader.interrupt())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def comment_line_breaks(query: str) -> str:
    """`hpsearch sql "-- note\\nSELECT 1"`: in a shell's double quotes `\\n` stays a backslash
    and an n, which would make the whole query one comment. In the leading `--` comments only
    (never in the SQL itself, where it may be data), it ends the comment line, as meant."""
    done: list[str] = []
    rest = query
    while rest.lstrip().startswith("--"):
        line, newline, rest = rest.partition("\n")
        comment, escaped, after = line.partition("\\n")
        done.append(comment)
        if escaped:
            rest = after + newline + rest
        elif not newline:
            return query  # nothing but comments: left as typed
    return "\n".join([*done, rest])


def sql_arguments(args: list[str]) -> list[str]:
    """Let `hpsearch sql "-- a comment\nSELECT 1"` start with a comment.

    click takes every argument that starts with '-' for an option; no option name holds
    whitespace, so such an argument is the query: it moves behind `--` (the end of options).
    """
    if not args or args[0] != "sql" or "--" in args:
        return args
    queries = {
        i
        for i, arg in enumerate(args)
        if arg.startswith("-")
        and any(c.isspace() for c in arg)
        and args[i - 1] not in SQL_OPTIONS_WITH_VALUE
    }
    if not queries:
        return args
    options = [arg for i, arg in enumerate(args) if i not in queries]
    return [*options, "--", *(args[i] for i in sorted(queries))]


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
    from hpsearch.lookup import study_from_arg
    from storage import load_trials

    record = study_from_arg(db, study)
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
    from hpsearch.lookup import study_from_arg
    from storage import iter_metrics, load_trials

    record = study_from_arg(db, study)
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
