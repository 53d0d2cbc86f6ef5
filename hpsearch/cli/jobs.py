"""`hpsearch submit` (a stage as a Ray Job) and `hpsearch jobs list|status|logs|stop`."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hpsearch.cli.options import (
    ArtifactsOpt,
    CpusPerTrialOpt,
    DbOpt,
    EpochsOpt,
    FromStageOpt,
    GpusPerTrialOpt,
    QuietOpt,
    RetriesOpt,
    SeedOpt,
    SpecArg,
    TopOpt,
    TrialsOpt,
    WidenOpt,
)
from hpsearch.cli.report import err, out
from hpsearch.run_options import RunOptions
from hpsearch.runtime import jobs
from storage import DEFAULT_DB, StageKind, masked

JobsAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="RAY_API_SERVER_ADDRESS",
        help="Ray dashboard (Jobs API) address, e.g. http://HEAD:8265.",
    ),
]
JobIdArg = Annotated[str, typer.Argument(help="Job id, as `hpsearch jobs list` shows it.")]


def submit(
    spec: SpecArg,
    stage: Annotated[StageKind, typer.Argument(help="Which stage the job runs.")],
    address: JobsAddressOpt = None,
    db: DbOpt = DEFAULT_DB,
    working_dir: Annotated[
        Path | None,
        typer.Option(help="Directory uploaded for the job (default: the spec's directory)."),
    ] = None,
    trials: TrialsOpt = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
    cpus_per_trial: CpusPerTrialOpt = 1.0,
    gpus_per_trial: GpusPerTrialOpt = 0.0,
    max_retries: RetriesOpt = 2,
    widen: WidenOpt = False,
    from_stage: FromStageOpt = None,
    top: TopOpt = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once submitted.")] = False,
    quiet: QuietOpt = False,
    artifacts: ArtifactsOpt = None,
) -> None:
    """Run a stage's driver on the cluster as a Ray Job; the database lives where it runs."""
    options = RunOptions(
        trials=trials,
        epochs=epochs,
        seed=seed,
        address=None,  # a job's Ray is the cluster it runs on (LOCAL_ONLY)
        cpus=None,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        max_retries=max_retries,
        quiet=quiet,
        widen=widen,
        from_stage=from_stage,
        top=top,
        artifacts=None if artifacts is None else jobs.absolute_location(artifacts),
    )
    from hpsearch.spec import load_spec

    load_spec(spec)  # a bad spec fails here, not minutes later in the job
    request = jobs.plan_job(stage, spec, db, working_dir, options)
    client = jobs.connect(address)
    job_id = jobs.submit(client, request)
    err.print(f"submitted job {job_id}: {request.entrypoint}", markup=False, soft_wrap=True)
    where = "HPSEARCH_DB of the job, " if request.has_secret else ""
    err.print(
        f"database: {masked(request.db)} ({where}on the node that runs the job)",
        markup=False,
        soft_wrap=True,
    )
    if no_wait:
        out.print(job_id, markup=False)
        return
    status = jobs.follow(client, job_id, lambda text: print(text, end="", flush=True))
    err.print(f"job {job_id}: {status}", markup=False)
    if status != "SUCCEEDED":
        raise typer.Exit(1)


def list_jobs(address: JobsAddressOpt = None) -> None:
    """All jobs of the cluster, oldest first."""
    rows = jobs.rows(jobs.connect(address))
    table = Table("job", "status", "started", "entrypoint")
    table.columns[0].no_wrap = True
    for row in rows:
        table.add_row(row.job_id, row.status, _when(row.start_time), row.entrypoint)
    out.print(table)


def status(job_id: JobIdArg, address: JobsAddressOpt = None) -> None:
    """A job's status and message; exit 1 if it failed or was stopped."""
    row = jobs.info(jobs.connect(address), job_id)
    out.print(f"{row.job_id}: {row.status}", markup=False)
    if row.message:
        out.print(row.message, markup=False, soft_wrap=True)
    if row.status in ("FAILED", "STOPPED"):
        raise typer.Exit(1)


def logs(
    job_id: JobIdArg,
    address: JobsAddressOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the job ends.")] = False,
) -> None:
    """A job's output (the driver's stdout and stderr)."""
    client = jobs.connect(address)
    if follow:
        jobs.info(client, job_id)
        jobs.follow(client, job_id, lambda text: print(text, end="", flush=True))
        return
    sys.stdout.write(jobs.logs(client, job_id))


def stop(job_id: JobIdArg, address: JobsAddressOpt = None) -> None:
    """Stop a running job; rerunning the stage later resumes it."""
    stopped = jobs.stop(jobs.connect(address), job_id)
    out.print(f"{job_id}: {'stopping' if stopped else 'already finished'}", markup=False)


def _when(seconds: float | None) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S") if seconds else ""


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    group = typer.Typer(help="Ray Jobs submitted with `hpsearch submit`.", no_args_is_help=True)
    group.command("list")(list_jobs)
    group.command("status")(status)
    group.command("logs")(logs)
    group.command("stop")(stop)
    app.add_typer(group, name="jobs")
