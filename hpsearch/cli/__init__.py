"""The `hpsearch` command line: thin typer commands; user errors become one line and exit 2.

One module per command group registers its commands on the app assembled here; shared
arguments and options live in the leaf module `options`.
"""

from __future__ import annotations

import os
import sys

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer's own click

from hpsearch.cli import best, check, db, jobs, plot, ray, results, stages, ui
from hpsearch.cli.report import err
from hpsearch.errors import HpsearchError
from storage import StorageError, masked

app = typer.Typer(
    help="Coarse-to-fine hyperparameter random search on Ray; every epoch in SQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for group in (stages, check, results, best, plot, jobs, db, ray, ui):
    group.register(app)


@app.callback()
def _root() -> None:
    """Coarse-to-fine hyperparameter random search on Ray; every epoch in SQL."""


def main() -> None:
    """Entry point: user errors as one line, exit 2 (traceback only with HPSEARCH_DEBUG=1)."""
    try:
        code = app(args=results.sql_arguments(sys.argv[1:]), standalone_mode=False)
    except (HpsearchError, StorageError) as exc:
        if os.environ.get("HPSEARCH_DEBUG") == "1":
            raise
        err.print(f"hpsearch: error: {masked(str(exc))}", markup=False, soft_wrap=True)
        sys.exit(2)
    except NoArgsIsHelpError as exc:  # the help text was printed already
        sys.exit(exc.exit_code)
    except ClickException as exc:  # bad flag or value: one line, not typer's boxed usage
        err.print(f"hpsearch: error: {masked(_usage_error(exc))}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("hpsearch: aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"{exc.format_message()}{hint}"
