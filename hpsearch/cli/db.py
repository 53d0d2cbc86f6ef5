"""`hpsearch db version` and `hpsearch db upgrade`: the schema version, and migrating it."""

from __future__ import annotations

import typer

from hpsearch.cli.options import DbOpt, ResultsDbOpt
from hpsearch.cli.report import out
from storage import DEFAULT_DB

db_app = typer.Typer(
    help="The database's schema: its version, and upgrading it to this hpsearch's.",
    no_args_is_help=True,
)


@db_app.command()
def version(db: ResultsDbOpt = DEFAULT_DB) -> None:
    """Print the database's schema version and whether this hpsearch writes it as it is."""
    from storage import schema_status
    from storage._schema import upgrade_command

    status = schema_status(db)
    revision = status.revision or "none: written before migrations"
    line = f"{status.db}: schema version {status.version} (alembic revision {revision})"
    if status.current:
        verdict = "current"
    elif status.version < status.head:
        verdict = f"older than this hpsearch ({status.head}): run `{upgrade_command(db)}`"
    else:
        verdict = f"newer than this hpsearch ({status.head}): `pip install -U hpsearch`"
    out.print(f"{line}: {verdict}", markup=False, soft_wrap=True)


@db_app.command()
def upgrade(db: DbOpt = DEFAULT_DB) -> None:
    """Migrate the database in place to this hpsearch's schema (SQLite: keeps NAME.bak first)."""
    from storage import revision_id, upgrade_schema

    done = upgrade_schema(db)
    if done.before == done.after:
        line = f"{done.db}: schema version {done.after} is current: nothing to do"
    else:
        kept = f"; the old file is kept as {done.backup}" if done.backup else ""
        line = (
            f"{done.db}: upgraded schema version {done.before} -> {done.after} "
            f"(revision {revision_id(done.after)}){kept}"
        )
    out.print(line, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
