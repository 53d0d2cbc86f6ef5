"""`hpsearch check` through typer's CliRunner on a bare app."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from hpsearch.cli.check import parse_params, register


def make_app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Keep `check` as a subcommand."""

    return app


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(make_app(), ["check", *args])


def test_check_prints_table_and_passes() -> None:
    result = invoke("mlp", "--param", "hidden=30", "--param", "dropout=0.2")
    assert result.exit_code == 0, result.output
    for text in ("grad data W1", "grad dropout W2", "initial loss", "overfit 20", "verdict"):
        assert text in result.output


def test_check_fails_with_exit_1() -> None:
    result = invoke("softmax", "--param", "lr=1e-12")
    assert result.exit_code == 1
    assert "overfit" in result.output


def test_bad_input_exits_2_with_one_line() -> None:
    for args, phrase in [
        (("cnn",), "unknown trainable 'cnn'"),
        (("svm", "--param", "hiden=3"), "unknown param 'hiden'"),
        (("svm", "--param", "lr"), "expected key=value"),
    ]:
        result = invoke(*args)
        assert result.exit_code == 2
        assert phrase in result.output
        assert "Traceback" not in result.output


def test_param_values_are_typed() -> None:
    assert parse_params(["a=3", "b=1e-3", "c=adam", "d=100,50"]) == {
        "a": 3,
        "b": 0.001,
        "c": "adam",
        "d": "100,50",
    }
