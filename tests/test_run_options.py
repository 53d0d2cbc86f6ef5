"""One definition of the run options: every option of `coarse` and `fine` reaches a submitted job.

The commands' options are read from the real click commands, and a job's command line is parsed
back with them: an option added to `coarse` or `fine` without its plumbing fails here.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_type_hints

import pytest
import typer.main

from hpsearch.cli import app
from hpsearch.errors import HpsearchError
from hpsearch.run_options import KIND_ONLY, LOCAL_ONLY, RunOptions
from hpsearch.runtime.jobs import plan_job
from storage import StageKind
from tests.conftest import run_cli

COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]
KINDS = [StageKind.COARSE, StageKind.FINE]
# Arguments of `coarse`/`fine` that are not run options: plan_job writes them itself.
JOB_ARGS = {
    "spec": "relative to the uploaded working dir",
    "db": "absolute, or the URL as given",
}
FIELDS = [f.name for f in dataclasses.fields(RunOptions)]


@pytest.fixture(autouse=True)
def no_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """--address reads RAY_ADDRESS (a local Ray sets it): parse only what is on the line."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def params(command: str) -> dict[str, Any]:
    return {p.name: p for p in COMMANDS[command].params}


def defaults() -> dict[str, Any]:
    """Each run option's default, as the `coarse` and `fine` commands declare it."""
    return {n: p.default for kind in KINDS for n, p in params(kind).items() if n in FIELDS}


def sample(kind: StageKind) -> RunOptions:
    """Every run option of this kind set to a value unlike its default and unlike the others."""
    values = defaults()
    for i, (name, hint) in enumerate(get_type_hints(RunOptions).items()):
        if name in KIND_ONLY and KIND_ONLY[name] is not kind:
            continue
        types = set(get_args(hint)) if isinstance(hint, UnionType) else {hint}
        if name == "schedule":  # a choice: asha | none
            values[name] = "asha"
        elif bool in types:
            values[name] = True
        elif int in types:
            values[name] = 3 + i
        elif float in types:
            values[name] = 0.25 * (i + 1)
        elif str in types:
            values[name] = f"10.0.0.{i}:6379"
        else:
            raise AssertionError(f"give a sample value for the run option {name} ({hint})")
        assert values[name] != defaults()[name], name
    return RunOptions(**values)


def parse(argv: list[str]) -> RunOptions:
    """A job's command line `python -m hpsearch KIND SPEC --db DB ...` read by the real command."""
    assert argv[:3] == ["python", "-m", "hpsearch"], argv
    kind, rest = argv[3], argv[4:]
    parsed = COMMANDS[kind].make_context(kind, rest).params
    return RunOptions(**{**defaults(), **{n: v for n, v in parsed.items() if n in FIELDS}})


def job_command_line(kind: StageKind, options: RunOptions, tmp_path: Path) -> list[str]:
    spec = tmp_path / "study.toml"
    spec.write_text("")  # plan_job checks paths only
    request = plan_job(kind, spec, "results.db", None, options)
    return shlex.split(request.entrypoint)


def test_every_option_of_coarse_and_fine_is_a_run_option() -> None:
    for kind in KINDS:
        for name in params(kind):
            assert name in FIELDS or name in JOB_ARGS, (
                f"`hpsearch {kind} --{name}` is not a field of RunOptions: it would never "
                "reach a submitted job"
            )
    assert set(KIND_ONLY) <= set(FIELDS)
    # Only these stay behind (see the reasons in hpsearch/run_options.py): a new exclusion is a
    # decision, taken here too.
    assert set(LOCAL_ONLY) == {"address", "cpus", "keep_logs"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_run_option_reaches_the_job_command_line(kind: StageKind, tmp_path: Path) -> None:
    options = sample(kind)
    argv = job_command_line(kind, options, tmp_path)
    local = {name: defaults()[name] for name in LOCAL_ONLY}
    assert parse(argv) == dataclasses.replace(options, **local)
    for name in LOCAL_ONLY:
        assert f"--{name.replace('_', '-')}" not in argv, name


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_reach_the_job_command_line_as_defaults(kind: StageKind, tmp_path: Path) -> None:
    options = RunOptions(**defaults())
    assert parse(job_command_line(kind, options, tmp_path)) == options


@pytest.mark.parametrize("kind", KINDS)
def test_submit_declares_every_option_a_job_gets_with_the_same_default(kind: StageKind) -> None:
    submit, command = params("submit"), params(kind)
    for name in set(command) - set(LOCAL_ONLY) - set(JOB_ARGS):
        assert name in submit, f"`hpsearch submit` has no --{name} of `hpsearch {kind}`"
        assert submit[name].default == command[name].default, name


def test_options_of_the_other_stage_kind_are_refused() -> None:
    fine_only = dataclasses.replace(RunOptions(**defaults()), from_stage=2, top=5)
    with pytest.raises(HpsearchError) as info:
        fine_only.to_argv(StageKind.COARSE)
    assert str(info.value) == "--from-stage and --top are options of a fine stage, not coarse"
    widened = dataclasses.replace(RunOptions(**defaults()), widen=True)
    with pytest.raises(HpsearchError) as info:
        widened.to_argv(StageKind.FINE)
    assert str(info.value) == "--widen is an option of a coarse stage, not fine"


def test_submit_refuses_an_option_of_the_other_kind_before_connecting(tmp_path: Path) -> None:
    spec = tmp_path / "study.toml"
    spec.write_text(
        'name = "s"\ntrainable = "synthetic"\nmetric = "val_acc"\n'
        '[space]\nlr = { type = "loguniform", low = 1e-4, high = 1 }\n'
    )
    done = run_cli(
        "submit", str(spec), "fine", "--widen", "--address", "http://127.0.0.1:1", cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "hpsearch: error: --widen is an option of a coarse stage, not fine"
    )
