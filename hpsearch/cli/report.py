"""What the CLI prints: the live progress bar, the summary line and the top-trials table."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from storage import Status, TrialRecord

if TYPE_CHECKING:  # the API and the driver import SQLAlchemy: not for `--help`
    from hpsearch.api import StageResult
    from hpsearch.driver import Progress as StageProgress

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@contextmanager
def progress_bar(label: str, quiet: bool) -> Iterator[Callable[[StageProgress], None] | None]:
    """A live bar on a terminal; nothing when quiet or when stderr is not a terminal."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(label, total=None, status="")

        def update(p: StageProgress) -> None:
            stopped = p.counts.get(Status.STOPPED, 0)  # only with an ASHA schedule
            status = (
                f"failed {p.counts.get(Status.FAILED, 0)}  "
                f"diverged {p.counts.get(Status.DIVERGED, 0)}"
                f"{f'  stopped {stopped}' if stopped else ''}"
                f"  best {fmt(p.best) if p.best is not None else '-'}"
            ) + stall_note(p)
            total, completed = p.total, p.done
            if p.budget is not None:  # the bar counts epochs; trials are drawn until spent
                total, completed = p.budget.total, min(p.budget.spent, p.budget.total)
                status = f"epochs  ({p.done} trials)  {status}"
            bar.update(task, total=total, completed=completed, status=status)

        yield update


def stall_note(p: StageProgress) -> str:
    """The progress line's warning while trials send no epoch for 10x the median epoch."""
    if p.stalled is None:
        return ""
    count, seconds = p.stalled
    trials = "1 trial" if count == 1 else f"{count} trials"
    return f"  [yellow]stalled: {trials} without an epoch for {seconds:.0f}s[/yellow]"


def summary_line(stage: StageResult, metric: str, seconds: float) -> str:
    parts = [f"{n} {status}" for status, n in sorted(stage.counts.items())]
    top = stage.top
    best = f"best {metric} {fmt(top[0].best_value)} (trial {top[0].number})" if top else "no best"
    return (
        f"{stage.kind} stage {stage.stage_id}: {stage.trials} trials "
        f"({', '.join(parts)}) in {seconds:.1f}s; {best}"
    )


def top_table(top: list[TrialRecord], metric: str, names: list[str]) -> Table:
    """The best trials, one column per parameter in the spec's order."""
    table = Table(title=f"Top {len(top)} trials by {metric}")
    for column in ("trial", metric, "epoch", *names):
        table.add_column(column, justify="right")
    for t in top:
        row = [str(t.number), fmt(t.best_value), str(t.best_epoch)]
        table.add_row(*row, *(fmt(t.params.get(n)) for n in names))
    return table


class Timer:
    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.start
