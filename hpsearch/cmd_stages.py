"""`hpsearch fine` (a stage on the proposed ranges) and `hpsearch show` (a study's stages)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from hpsearch.cli import (
    AddressOpt,
    CpusOpt,
    CpusPerTrialOpt,
    DbOpt,
    EpochsOpt,
    GpusPerTrialOpt,
    QuietOpt,
    RetriesOpt,
    SeedOpt,
    SpecArg,
    TrialsOpt,
    execute_stage,
    open_study_inputs,
)
from hpsearch.cmd_results import StudyArg
from hpsearch.driver import next_plan
from hpsearch.executor import RayOptions
from hpsearch.lookup import open_existing, study_from_arg
from hpsearch.narrowing import ranked, split_proposal
from hpsearch.report import fmt, out
from storage import DEFAULT_DB, StageRecord, Store, StudyRecord

FromStageOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Stage whose proposal to use (default: latest finished coarse)."),
]
TopOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Recompute the proposal from the best K trials (default: spec)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (a stable interface).")]


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
    study_spec, store = open_study_inputs(spec, db)
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
    app.command()(fine)
    app.command()(show)
