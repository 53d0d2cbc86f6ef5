"""`hpsearch coarse` and `fine` (run a stage on Ray) and `hpsearch show` (a study's stages)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hpsearch.cli.advice import print_advice
from hpsearch.cli.options import (
    AddressOpt,
    ArtifactsOpt,
    CpusOpt,
    CpusPerTrialOpt,
    DbOpt,
    EpochsOpt,
    FromStageOpt,
    GpusPerTrialOpt,
    JsonOpt,
    KeepLogsOpt,
    QuietOpt,
    ResultsDbOpt,
    RetriesOpt,
    ScheduleOpt,
    SeedOpt,
    SpecArg,
    StudyArg,
    TopOpt,
    TrialsOpt,
    TrialTimeoutOpt,
    WidenOpt,
)
from hpsearch.cli.report import Timer, err, fmt, out, progress_bar, summary_line, top_table
from hpsearch.errors import ClusterLost, Terminated
from hpsearch.run_options import RunOptions
from storage import DEFAULT_DB, StageKind, StageStatus, Status

if TYPE_CHECKING:  # the API, planner and driver import numpy and SQLAlchemy: not for `--help`
    from hpsearch.api import Study
    from hpsearch.driver import Progress, ProgressCallback
    from hpsearch.planner import StageRequest
    from hpsearch.runtime.executor import RayOptions
    from hpsearch.spec import StageSettings, StudySpec


def open_study(
    spec_path: Path, db: str, address: str | None, artifacts: str | None = None
) -> Study:
    """Validate everything a stage needs before Ray starts: spec, trainable, cluster address,
    database; a bad address fails before the database is created or opened."""
    from hpsearch.api import Study

    return Study.from_spec(spec_path, db, address=address, artifacts=artifacts)


def ray_options(options: RunOptions, settings: StageSettings) -> RayOptions:
    """The run options the executor uses (the time limit defaults to the spec's)."""
    from hpsearch.runtime.executor import RayOptions

    return RayOptions(
        options.address,
        options.cpus,
        options.cpus_per_trial,
        options.gpus_per_trial,
        options.max_retries,
        trial_timeout=options.trial_timeout or settings.trial_timeout,
        keep_logs=options.keep_logs,
    )


def stage_request(kind: StageKind, settings: StageSettings, options: RunOptions) -> StageRequest:
    """What the planner is asked for: trials and epochs default to the spec's stage settings."""
    from hpsearch.planner import StageRequest

    options.check(kind)
    return StageRequest(
        kind,
        options.trials or settings.trials,
        options.epochs or settings.epochs,
        options.seed,
        widen=options.widen,
        from_stage=options.from_stage,
        top=options.top,
        schedule=None if options.schedule is None else str(options.schedule),
    )


def execute_stage(study: Study, kind: StageKind, options: RunOptions) -> None:
    """Run (or resume) a stage through the API, print the outcome; exit 1 if none completed."""
    timer = Timer()
    spec, quiet = study.spec, options.quiet
    settings = spec.coarse if kind is StageKind.COARSE else spec.fine
    request = stage_request(kind, settings, options)
    try:
        with ExitStack() as stack:
            view = _progress_view(spec, quiet, stack)
            result = study.run(request, ray_options(options, settings), on_progress=view)
    except ClusterLost as lost:
        log = ray_messages()
        err.print(
            f"hpsearch: {lost}; results so far are saved: rerun the command to resume"
            + (f" ({log})" if log else ""),
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    except KeyboardInterrupt as stop:
        from hpsearch.runtime.executor import sigterm_seen

        sigterm = isinstance(stop, Terminated) or sigterm_seen()
        why, code = ("terminated (SIGTERM)", 143) if sigterm else ("interrupted", 130)
        err.print(f"hpsearch: {why}; {_saved_line(study, kind)}", soft_wrap=True)
        raise typer.Exit(code) from None
    out.print(summary_line(result, spec.metric, timer.seconds), soft_wrap=True)
    log = ray_messages()
    if log:
        out.print(log, markup=False, soft_wrap=True)
    if result.top and not quiet:
        out.print(top_table(list(result.top), spec.metric, list(spec.space.dimensions)))
    print_advice(spec, study.store.db, result)
    if not result.counts.get(Status.COMPLETED):
        raise typer.Exit(1)


def ray_messages() -> str | None:
    """Where Ray's own messages (dead workers, a dead raylet) went, and the session directory
    of a local Ray kept by --keep-logs; None when there is neither."""
    from hpsearch.runtime import ray_log

    notes = []
    written = ray_log.written()
    if written:
        notes.append(f"Ray's messages ({written[1]}, e.g. workers that died): {written[0]}")
    kept = ray_log.kept_session()
    if kept:
        notes.append(f"Ray's session directory (kept): {kept}")
    return "; ".join(notes) or None


def _saved_line(study: Study, kind: StageKind) -> str:
    """What the database holds of the interrupted stage, read back from it."""
    from hpsearch.driver import saved

    try:
        found = saved(study.store, study.spec.name, kind)
    except Exception:  # the database itself failed: its last commits are all there is
        return "results committed so far are saved: rerun the command to resume"
    if found is None:
        return f"the {kind} stage had not begun: nothing of it was saved in {study.store.db}"
    stage, n = found.stage, found.stage.n_trials
    final = {s: c for s, c in sorted(found.counts.items()) if Status(s).is_final}
    detail = f" ({', '.join(f'{c} {s}' for s, c in final.items())})" if final else ""
    done = f"{sum(final.values())} of {n} trials finished{detail}"
    inserted = f"{found.inserted} of {n} configurations inserted"
    if found.budget is not None:  # the stage draws trials until its epochs are spent
        done = f"{sum(final.values())} trials finished{detail}"
        inserted = f"{found.budget.spent} of {found.budget.total} epochs spent by them"
    return (
        f"saved in {study.store.db}: {kind} stage {stage.stage_id}: {done}, {inserted}: "
        f"rerun the command to resume"
    )


def _progress_view(spec: StudySpec, quiet: bool, stack: ExitStack) -> ProgressCallback:
    """On the first report: the resuming line, then the live bar (closed with the stack)."""
    bar: list[ProgressCallback | None] = []

    def update(p: Progress) -> None:
        if not bar:
            stage = p.stage
            if p.resumed:
                left = f"{p.left} of {stage.n_trials} trials left"
                if p.budget is not None:
                    left = f"{p.budget.spent} of {p.budget.total} epochs spent, {left}"
                err.print(f"resuming {stage.kind} stage {stage.stage_id}: {left}")
            label = f"{spec.name} {stage.kind} {stage.stage_id}"
            bar.append(stack.enter_context(progress_bar(label, quiet)))
        if bar[0] is not None:
            bar[0](p)

    return update


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
    trial_timeout: TrialTimeoutOpt = None,
    keep_logs: KeepLogsOpt = False,
    quiet: QuietOpt = False,
    widen: WidenOpt = False,
    artifacts: ArtifactsOpt = None,
    schedule: ScheduleOpt = None,
) -> None:
    """Run (or resume) a coarse stage: many short trials over the spec's ranges."""
    options = RunOptions(
        trials=trials,
        epochs=epochs,
        seed=seed,
        address=address,
        cpus=cpus,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        max_retries=max_retries,
        trial_timeout=trial_timeout,
        keep_logs=keep_logs,
        quiet=quiet,
        widen=widen,
        from_stage=None,
        top=None,
        artifacts=artifacts,
        schedule=schedule,
    )
    execute_stage(open_study(spec, db, address, artifacts), StageKind.COARSE, options)


def fine(
    spec: SpecArg,
    db: DbOpt = DEFAULT_DB,
    from_stage: FromStageOpt = None,
    trials: TrialsOpt = None,
    epochs: EpochsOpt = None,
    top: TopOpt = None,
    seed: SeedOpt = None,
    address: AddressOpt = None,
    cpus: CpusOpt = None,
    cpus_per_trial: CpusPerTrialOpt = 1.0,
    gpus_per_trial: GpusPerTrialOpt = 0.0,
    max_retries: RetriesOpt = 2,
    trial_timeout: TrialTimeoutOpt = None,
    keep_logs: KeepLogsOpt = False,
    quiet: QuietOpt = False,
    artifacts: ArtifactsOpt = None,
    schedule: ScheduleOpt = None,
) -> None:
    """Run (or resume) a fine stage: longer trials on the proposed ranges, hopeless ones stopped."""
    options = RunOptions(
        trials=trials,
        epochs=epochs,
        seed=seed,
        address=address,
        cpus=cpus,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        max_retries=max_retries,
        trial_timeout=trial_timeout,
        keep_logs=keep_logs,
        quiet=quiet,
        widen=False,
        from_stage=from_stage,
        top=top,
        artifacts=artifacts,
        schedule=schedule,
    )
    execute_stage(open_study(spec, db, address, artifacts), StageKind.FINE, options)


def show(study: StudyArg, db: ResultsDbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """A study's stages in order: ranges, trials by status, best trial, flags, proposal."""
    from hpsearch.lookup import study_name_from_arg
    from hpsearch.summary import study_document
    from storage import describe, load_summary

    summary = study_document(load_summary(db, study_name_from_arg(study)))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for line in summary_lines(summary, describe(db)):
        out.print(line, markup=False, soft_wrap=True)


def summary_lines(summary: dict[str, Any], db: str) -> list[str]:
    lines = [f"study {summary['study']} ({summary['metric']}, {summary['mode']}) in {db}"]
    for stage in summary["stages"]:
        lines.extend(_stage_lines(stage, summary["metric"]))
    if not summary["stages"]:
        lines.append("no stages yet")
    lines.extend(_ensemble_lines(summary.get("ensembles", [])))
    return lines


def _ensemble_lines(ensembles: list[dict[str, Any]]) -> list[str]:
    lines = ["", "ensembles:"] if ensembles else []
    for e in ensembles:
        members = ", ".join(f"{m['trial']}@{m['epoch']}" for m in e["members"])
        lines.append(
            f"  ensemble {e['id']} {e['kind']} of stage {e['stage']} ({e['size']} members, "
            f"{e['split']}): accuracy {e['accuracy']:.4f}, best member "
            f"{e['best_member_accuracy']:.4f}, gain {100 * e['gain']:+.2f} points "
            f"(trial@epoch: {members})"
        )
    return lines


def _stage_size(stage: dict[str, Any]) -> str:
    """`N trials x E epochs`, or for a stage with an epoch budget what it drew trials for."""
    budget = stage["epoch_budget"]
    if budget is None:
        return f"{stage['trials']} trials x {stage['epochs']} epochs"
    return (
        f"{stage['trials']} trials of up to {stage['epochs']} epochs "
        f"(ASHA: drawn until {budget} epochs were spent)"
    )


def _stage_lines(stage: dict[str, Any], metric: str) -> list[str]:
    parent = f", from stage {stage['parent']}" if stage["parent"] else ""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(stage["counts"].items()))
    lines = [
        "",
        f"stage {stage['id']} {stage['kind']} ({stage['status']}{parent}): "
        f"{_stage_size(stage)}, seed {stage['seed']}",
        f"  trials: {counts}",
        "  ranges:",
        *(f"    {_range(name, r)}" for name, r in stage["ranges"].items()),
    ]
    best = stage["best"]
    if best is not None:
        params = ", ".join(f"{k}={fmt(v)}" for k, v in best["params"].items())
        lines.append(
            f"  best: trial {best['trial']} {metric} {fmt(best['value'])} "
            f"at epoch {best['epoch']} ({params})"
        )
    lines.extend(f"  flag: {f['message']}" for f in stage["flags"])
    if stage["checkpoints"]["files"]:
        kept = stage["checkpoints"]
        lines.append(
            f"  checkpoints: {kept['checkpoints']} ({kept['files']} files, {_size(kept['bytes'])})"
        )
    if stage["proposal"] is not None:
        lines.append("  proposed next ranges:")
        lines.extend(
            f"    {_range(name, r)}   ({stage['reasons'].get(name, '')})"
            for name, r in stage["proposal"].items()
        )
    elif stage["status"] == StageStatus.FINISHED:
        lines.append("  no proposal: no trial completed")
    return lines


def _size(n: int) -> str:
    """Bytes for a person: 532 bytes, 1.2 MB."""
    if n < 1000:
        return f"{n} bytes"
    value, unit = float(n) / 1000, "KB"
    for bigger in ("MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.1f} {unit}"


def _range(name: str, r: dict[str, Any]) -> str:
    if r["type"] == "choice":
        return f"{name}: choice {r['values']}"
    limits = "".join(f" {k}={fmt(r[k])}" for k in ("min", "max") if k in r)
    return f"{name}: {r['type']} [{fmt(r['low'])}, {fmt(r['high'])}]{limits}"


def register(app: typer.Typer) -> None:
    app.command()(coarse)
    app.command()(fine)
    app.command()(show)
