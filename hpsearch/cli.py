"""The `hpsearch` command line: thin typer commands; user errors become one line and exit 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer's own click

from hpsearch.advice import print_advice
from hpsearch.cluster import check_cluster
from hpsearch.driver import (
    StagePlan,
    finish_stage,
    next_plan,
    run_stage,
    start_or_resume,
    top_trials,
)
from hpsearch.errors import HpsearchError
from hpsearch.executor import RayExecutor, RayOptions, Workload
from hpsearch.registry import qualified, resolve
from hpsearch.report import Timer, err, out, progress_bar, summary_line, top_table
from hpsearch.spec import StudySpec, load_spec
from storage import DEFAULT_DB, StorageError, Store

app = typer.Typer(
    help="Coarse-to-fine hyperparameter random search on Ray; every epoch in SQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[Path, typer.Argument(help="Study spec (TOML).", show_default=False)]
DbOpt = Annotated[
    str,
    typer.Option("--db", envvar="HPSEARCH_DB", help="SQLite path or SQLAlchemy URL."),
]
TrialsOpt = Annotated[int | None, typer.Option(min=1, help="Trials (default: from the spec).")]
EpochsOpt = Annotated[int | None, typer.Option(min=1, help="Epochs per trial (default: spec).")]
SeedOpt = Annotated[
    int | None, typer.Option(min=0, help="Sampling seed (default: spec seed + stage count).")
]
AddressOpt = Annotated[
    str | None,
    typer.Option(envvar="RAY_ADDRESS", help="Ray cluster HOST:PORT (default: start local Ray)."),
]
CpusOpt = Annotated[int | None, typer.Option(min=1, help="CPUs of the local Ray (default: all).")]
CpusPerTrialOpt = Annotated[float, typer.Option(min=0.01, help="CPUs per trial.")]
GpusPerTrialOpt = Annotated[float, typer.Option(min=0.0, help="GPUs per trial.")]
RetriesOpt = Annotated[int, typer.Option(min=0, help="Retries of a trial whose worker died.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")]
WidenOpt = Annotated[
    bool,
    typer.Option(
        "--widen",
        help="Sample the ranges proposed by the latest finished stage (after an edge flag).",
    ),
]


def open_study_inputs(spec_path: Path, db: str) -> tuple[StudySpec, Store]:
    """Validate everything a stage needs before Ray starts: spec, trainable, database."""
    spec = load_spec(spec_path)
    resolve(spec.trainable, spec.directory.resolve())
    return spec, Store(db)


def execute_stage(
    spec: StudySpec, store: Store, plan: StagePlan, options: RayOptions, quiet: bool
) -> None:
    """Start or resume a stage, run it on Ray, print the outcome; exit 1 if nothing completed."""
    timer = Timer()
    check_cluster(options.address)  # a bad --address fails here, before the database changes
    workload = Workload(qualified(spec.trainable), spec.metric, spec.directory.resolve())
    executor = RayExecutor(workload, options)  # refuses impossible resource requests
    try:
        study, stage, resumed = start_or_resume(store, spec, plan)
        if resumed:
            left = len(store.trials(stage.stage_id, unfinished_only=True))
            name = f"{stage.kind} stage {stage.stage_id}"
            err.print(f"resuming {name}: {left} of {stage.n_trials} trials left")
        label = f"{study.name} {stage.kind} {stage.stage_id}"
        with progress_bar(label, quiet) as on_progress:
            counts = run_stage(store, spec, stage, executor, on_progress)
    except KeyboardInterrupt:
        err.print("hpsearch: interrupted; results so far are saved: rerun the command to resume")
        raise typer.Exit(130) from None
    finally:
        executor.close()
    analysis = finish_stage(store, spec, stage)
    top = top_trials(store, stage, spec.mode)
    out.print(summary_line(stage, counts, spec.metric, top, timer.seconds), soft_wrap=True)
    if top and not quiet:
        out.print(top_table(top, spec.metric, list(spec.space.dimensions)))
    print_advice(spec, store.db, stage, analysis)
    if not counts.get("completed"):
        raise typer.Exit(1)


@app.command()
def coarse(
    spec: SpecArg,
    db: DbOpt = DEFAULT_DB,
    trials: TrialsOpt = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
    address: AddressOpt = None,
    cpus: CpusOpt = None,
    cpus_per_trial: CpusPerTrialOpt = 1.0,
    gpus_per_trial: GpusPerTrialOpt = 0.0,
    max_retries: RetriesOpt = 2,
    quiet: QuietOpt = False,
    widen: WidenOpt = False,
) -> None:
    """Run (or resume) a coarse stage: many short trials over the spec's ranges."""
    study_spec, store = open_study_inputs(spec, db)
    n_trials, n_epochs = trials or study_spec.coarse.trials, epochs or study_spec.coarse.epochs
    if widen:
        plan = next_plan(store, study_spec, "coarse", trials=n_trials, epochs=n_epochs, seed=seed)
    else:
        plan = StagePlan("coarse", study_spec.space, n_trials, n_epochs, seed)
    options = RayOptions(address, cpus, cpus_per_trial, gpus_per_trial, max_retries)
    execute_stage(study_spec, store, plan, options, quiet)


from hpsearch import cmd_check  # noqa: E402

cmd_check.register(app)

from hpsearch import cmd_stages  # noqa: E402

cmd_stages.register(app)

from hpsearch import cmd_results  # noqa: E402

cmd_results.register(app)

from hpsearch import cmd_plot  # noqa: E402

cmd_plot.register(app)

from hpsearch import cmd_jobs  # noqa: E402

cmd_jobs.register(app)


@app.callback()
def _root() -> None:
    """Coarse-to-fine hyperparameter random search on Ray; every epoch in SQL."""


def main() -> None:
    """Entry point: user errors as one line, exit 2 (traceback only with HPSEARCH_DEBUG=1)."""
    try:
        code = app(standalone_mode=False)
    except (HpsearchError, StorageError) as exc:
        if os.environ.get("HPSEARCH_DEBUG") == "1":
            raise
        err.print(f"hpsearch: error: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    except NoArgsIsHelpError as exc:  # the help text was printed already
        sys.exit(exc.exit_code)
    except ClickException as exc:  # bad flag or value: one line, not typer's boxed usage
        err.print(f"hpsearch: error: {_usage_error(exc)}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("hpsearch: aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"{exc.format_message()}{hint}"
