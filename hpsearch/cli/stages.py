"""`hpsearch coarse` and `fine` (run a stage on Ray) and `hpsearch show` (a study's stages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

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
from hpsearch.driver import (
    StagePlan,
    finish_stage,
    next_plan,
    run_stage,
    start_or_resume,
    top_trials,
)
from hpsearch.lookup import open_existing, study_from_arg
from hpsearch.narrowing import ranked, split_proposal
from hpsearch.registry import qualified, resolve
from hpsearch.runtime.cluster import check_cluster
from hpsearch.runtime.executor import RayExecutor, RayOptions, Workload
from hpsearch.spec import StudySpec, load_spec
from storage import DEFAULT_DB, StageRecord, Store, StudyRecord


def open_study_inputs(
    spec_path: Path, db: str, address: str | None = None
) -> tuple[StudySpec, Store]:
    """Validate everything a stage needs before Ray starts: spec, trainable, cluster address,
    database; a bad address fails before the database is created or opened."""
    spec = load_spec(spec_path)
    resolve(spec.trainable, spec.directory.resolve())
    check_cluster(address)
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
    study_spec, store = open_study_inputs(spec, db, address)
    n_trials, n_epochs = trials or study_spec.coarse.trials, epochs or study_spec.coarse.epochs
    if widen:
        plan = next_plan(store, study_spec, "coarse", trials=n_trials, epochs=n_epochs, seed=seed)
    else:
        plan = StagePlan("coarse", study_spec.space, n_trials, n_epochs, seed)
    options = RayOptions(address, cpus, cpus_per_trial, gpus_per_trial, max_retries)
    execute_stage(study_spec, store, plan, options, quiet)


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
    study_spec, store = open_study_inputs(spec, db, address)
    plan = next_plan(
        store,
        study_spec,
        "fine",
        trials=trials or study_spec.fine.trials,
        epochs=epochs or study_spec.fine.epochs,
        seed=seed,
        from_stage=from_stage,
        top=top,
    )
    options = RayOptions(address, cpus, cpus_per_trial, gpus_per_trial, max_retries)
    execute_stage(study_spec, store, plan, options, quiet)


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
        "best": None
        if best is None
        else {
            "trial": best.number,
            "trial_id": best.trial_id,
            "value": best.best_value,
            "epoch": best.best_epoch,
            "params": best.params,
        },
        "flags": [
            {
                "param": f.param,
                "side": f.side,
                "value": f.value,
                "position": f.position,
                "message": f.message,
            }
            for f in store.flags(stage.stage_id)
        ],
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
    elif stage["status"] == "finished":
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
