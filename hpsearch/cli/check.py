"""`hpsearch check TRAINABLE --param k=v`: the recipe's sanity checks before a search.

Runs :func:`trainables.checks.run_checks` (gradient check, initial loss, overfit 20
examples) and prints one row per check. Exit 0 when all pass, 1 when any fails, 2 on bad
input (unknown trainable, malformed or unknown ``--param``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

CHECKABLE = ("softmax", "svm", "mlp")


def parse_value(text: str) -> int | float | str:
    """``"3"`` -> 3, ``"1e-3"`` -> 0.001, anything else stays a string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param: expected key=value, got {item!r}")
        params[key.strip()] = parse_value(value.strip())
    return params


def _fmt(value: float) -> str:
    return f"{value:.3g}" if value and abs(value) < 1e-3 else f"{value:.6g}"


def check(
    trainable: Annotated[str, typer.Argument(help=f"One of {', '.join(CHECKABLE)}.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Trainable param key=value (repeatable)."),
    ] = None,
) -> None:
    """Gradient check, initial loss and overfitting 20 examples; exit 1 if any check fails."""
    err = Console(stderr=True, highlight=False)
    try:
        if trainable not in CHECKABLE:
            raise ValueError(
                f"check: unknown trainable {trainable!r}; expected one of {', '.join(CHECKABLE)}"
            )
        params = parse_params(param or [])
        from trainables.checks import run_checks

        results = run_checks(trainable, params)
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"hpsearch: error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    table = Table(title=f"hpsearch check {trainable}")
    for column in ("check", "value", "expected", "verdict"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for r in results:
        style = "" if r.passed else "bold red"
        table.add_row(r.check, _fmt(r.value), r.expected, r.verdict, style=style)
    Console(highlight=False).print(table)
    failed = [r.check for r in results if not r.passed]
    if failed:
        err.print(f"hpsearch: {len(failed)} check(s) failed: {', '.join(failed)}", markup=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``check`` command to ``app``."""
    app.command("check")(check)
