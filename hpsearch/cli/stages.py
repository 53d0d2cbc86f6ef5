"""`hpsearch coarse` and `fine` (run a stage on Ray) and `hpsearch show` (a study's stages)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer

from hpsearch.api import Study, best_json, flag_json
from hpsearch.cli.advice import print_advice
from hpsearch.cli.options import (
    AddressOpt,
    CpusOpt,
    CpusPerTrialOpt,
    DbOpt,
    EpochsOpt,
    FromStageOpt,
    GpusPerTrialOpt,
    JsonOpt,
    QuietOpt,
    RetriesOpt,
    SeedOpt,
    SpecArg,
    StudyArg,
    TopOpt,
    TrialsOpt,
    WidenOpt,
)
from hpsearch.cli.report import Timer, err, fmt, out, progress_bar, summary_line, top_table
from hpsearch.driver import Progress, ProgressCallback
from hpsearch.lookup import open_existing, study_from_arg
from hpsearch.narrowing import split_proposal
from hpsearch.planner import StageRequest
from hpsearch.ranking import ranked
from hpsearch.runtime.executor import RayOptions
from hpsearch.spec import StudySpec
from storage import DEFAULT_DB, StageKind, StageRecord, StageStatus, Status, Store, StudyRecord


def open_study(spec_path: Path, db: str) -> Study:
    """Validate everything a stage needs before Ray starts: spec, trainable, database."""
    return Study.from_spec(spec_path, db)


def execute_stage(study: Study, request: StageRequest, options: RayOptions, quiet: bool) -> None:
    """Run (or resume) a stage through the API, print the outcome; exit 1 if none completed."""
    timer = Timer()
    spec = study.spec
    try:
        with ExitStack() as stack:
            result = study.run(request, options, on_progress=_progress_view(spec, quiet, stack))
    except KeyboardInterrupt:
        err.print("hpsearch: interrupted; results so far are saved: rerun the command to resume")
        raise typer.Exit(130) from None
    out.print(summary_line(result, spec.metric, timer.seconds), soft_wrap=True)
    if result.top and not quiet:
        out.print(top_table(list(result.top), spec.metric, list(spec.space.dimensions)))
    print_advice(spec, study.store.db, result)
    if not result.counts.get(Status.COMPLETED):
        raise typer.Exit(1)


def _progress_view(spec: StudySpec, quiet: bool, stack: ExitStack) -> ProgressCallback:
    """On the first report: the resuming line, then the live bar (closed with the stack)."""
    bar: list[ProgressCallback | None] = []

    def update(p: Progress) -> None:
        if not bar:
            stage = p.stage
            if p.resumed:
                err.print(
                    f"resuming {stage.kind} stage {stage.stage_id}: "
                    f"{p.left} of {stage.n_trials} trials left"
                )
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
    quiet: QuietOpt = False,
    widen: WidenOpt = False,
) -> None:
    """Run (or resume) a coarse stage: many short trials over the spec's ranges."""
    study = open_study(spec, db)
    request = StageRequest(
        StageKind.COARSE,
        trials or study.spec.coarse.trials,
        epochs or study.spec.coarse.epochs,
        seed,
        widen=widen,
    )
    options = RayOptions(address, cpus, cpus_per_trial, gpus_per_trial, max_retries)
    execute_stage(study, request, options, quiet)


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
    quiet: QuietOpt = False,
) -> None:
    """Run (or resume) a fine stage: fewer, longer trials on the ranges a stage proposed."""
    study = open_study(spec, db)
    request = StageRequest(
        StageKind.FINE,
        trials or study.spec.fine.trials,
        epochs or study.spec.fine.epochs,
        seed,
        from_stage=from_stage,
        top=top,
    )
    options = RayOptions(address, cpus, cpus_per_trial, gpus_per_trial, max_retries)
    execute_stage(study, request, options, quiet)


def show(study: StudyArg, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """A study's stages in order: ranges, trials by status, best trial, flags, proposal."""
    store = open_existing(db)
    record = study_from_arg(store, study)
    summary = study_summary(store, record)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for line in summary_lines(summary, store.db):
        out.print(line, markup=False, soft_wrap=True)


def study_summary(store: Store, study: StudyRecord) -> dict[str, Any]:
    """The `show --json` document: {"study", "metric", "mode", "stages": [...]}."""
    stages = [_stage_summary(store, study, s) for s in store.stages(study.study_id)]
    return {"study": study.name, "metric": study.metric, "mode": study.mode, "stages": stages}


def _stage_summary(store: Store, study: StudyRecord, stage: StageRecord) -> dict[str, Any]:
    order = ranked(store.trials(stage.stage_id), study.mode)
    best = order[0] if order else None
    proposal, reasons = split_proposal(stage.proposal)
    return {
        "id": stage.stage_id,
        "kind": stage.kind,
        "parent": stage.parent_stage_id,
        "status": stage.status,
        "trials": stage.n_trials,
        "epochs": stage.epochs,
        "seed": stage.seed,
        "ranges": stage.ranges,
        "counts": store.status_counts(stage.stage_id),
        "best": None if best is None else best_json(best),
        "flags": [flag_json(f) for f in store.flags(stage.stage_id)],
        "proposal": proposal,
        "reasons": reasons,
    }


def summary_lines(summary: dict[str, Any], db: str) -> list[str]:
    lines = [f"study {summary['study']} ({summary['metric']}, {summary['mode']}) in {db}"]
    for stage in summary["stages"]:
        lines.extend(_stage_lines(stage, summary["metric"]))
    if not summary["stages"]:
        lines.append("no stages yet")
    return lines


def _stage_lines(stage: dict[str, Any], metric: str) -> list[str]:
    parent = f", from stage {stage['parent']}" if stage["parent"] else ""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(stage["counts"].items()))
    lines = [
        "",
        f"stage {stage['id']} {stage['kind']} ({stage['status']}{parent}): "
        f"{stage['trials']} trials x {stage['epochs']} epochs, seed {stage['seed']}",
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
    if stage["proposal"] is not None:
        lines.append("  proposed next ranges:")
        lines.extend(
            f"    {_range(name, r)}   ({stage['reasons'].get(name, '')})"
            for name, r in stage["proposal"].items()
        )
    elif stage["status"] == StageStatus.FINISHED:
        lines.append("  no proposal: no trial completed")
    return lines


def _range(name: str, r: dict[str, Any]) -> str:
    if r["type"] == "choice":
        return f"{name}: choice {r['values']}"
    limits = "".join(f" {k}={fmt(r[k])}" for k in ("min", "max") if k in r)
    return f"{name}: {r['type']} [{fmt(r['low'])}, {fmt(r['high'])}]{limits}"


def register(app: typer.Typer) -> None:
    app.command()(coarse)
    app.command()(fine)
    app.command()(show)
