"""`hpsearch ui`: serve the live dashboard (read-only) until Ctrl-C."""

from __future__ import annotations

import webbrowser
from typing import Annotated

import typer

from hpsearch.cli.options import ResultsDbOpt
from hpsearch.cli.report import err
from hpsearch.ui import DEFAULT_HOST, DEFAULT_PORT
from storage import DEFAULT_DB


def ui(
    db: ResultsDbOpt = DEFAULT_DB,
    host: Annotated[
        str, typer.Option(help="Address to listen on; any but 127.0.0.1 needs a token.")
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = (
        DEFAULT_PORT
    ),
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the dashboard in a web browser.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(help="Token every request must carry (default: new, off 127.0.0.1)."),
    ] = None,
    sql_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a query of the SQL box may run.")
    ] = 10.0,
) -> None:
    """Serve a live web dashboard of the results (read-only) until Ctrl-C."""
    import asyncio  # ~40 ms (ssl): only this command needs it

    from hpsearch.ui.server import Settings, check_host, serve, settle_token
    from storage import describe, read_only

    check_host(host)
    with read_only(db):  # a missing or foreign database fails here, before listening
        pass
    settings = Settings(db, host, port, settle_token(host, token), sql_timeout)

    def ready(url: str) -> None:
        typer.echo(f"hpsearch ui: {describe(db)} at {url}")
        typer.echo("(Ctrl-C stops it)", err=True)
        if open_browser:
            webbrowser.open(url)

    try:
        asyncio.run(serve(settings, ready))
    except KeyboardInterrupt:
        err.print("hpsearch ui: stopped")
        raise typer.Exit(130) from None


def register(app: typer.Typer) -> None:
    app.command()(ui)
