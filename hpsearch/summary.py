"""The `show --json` document of a study: each stage's counts, best trial, flags and proposal.

One shape for `hpsearch show`, the dashboard's study page and the API's `StageResult`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from hpsearch.narrowing import split_proposal
from storage import EnsembleRecord, FlagRecord, StageSummary, StudySummary, TrialRecord


def best_json(trial: TrialRecord) -> dict[str, Any]:
    """A stage's best trial as `show --json` prints it."""
    return {
        "trial": trial.number,
        "trial_id": trial.trial_id,
        "value": trial.best_value,
        "epoch": trial.best_epoch,
        "params": trial.params,
    }


def flag_json(flag: FlagRecord) -> dict[str, Any]:
    """An edge flag as `show --json` prints it."""
    return {
        "param": flag.param,
        "side": flag.side,
        "value": flag.value,
        "position": flag.position,
        "message": flag.message,
    }


def stage_document(summary: StageSummary) -> dict[str, Any]:
    stage, best = summary.stage, summary.best
    proposal, reasons = split_proposal(stage.proposal)
    return {
        "id": stage.stage_id,
        "kind": stage.kind,
        "parent": stage.parent_stage_id,
        "status": stage.status,
        "trials": stage.n_trials,
        "epochs": stage.epochs,
        "epoch_budget": stage.epoch_budget,
        "seed": stage.seed,
        "ranges": stage.ranges,
        "counts": summary.counts,
        "best": None if best is None else best_json(best),
        "flags": [flag_json(f) for f in summary.flags],
        "proposal": proposal,
        "reasons": reasons,
        "checkpoints": asdict(summary.checkpoints),  # checkpoints, files, bytes
    }


def ensemble_document(ensemble: EnsembleRecord) -> dict[str, Any]:
    """An ensemble as `show --json` prints it; `gain` is accuracy minus the best member's."""
    return {
        "id": ensemble.ensemble_id,
        "kind": ensemble.kind,
        "stage": ensemble.stage_id,
        "size": ensemble.size,
        "split": ensemble.split,
        "accuracy": ensemble.accuracy,
        "best_member_accuracy": ensemble.best_member_accuracy,
        "gain": ensemble.gain,
        "members": [
            {"trial": m.trial, "trial_id": m.trial_id, "epoch": m.epoch, "accuracy": m.accuracy}
            for m in ensemble.members
        ],
    }


def study_document(summary: StudySummary) -> dict[str, Any]:
    """The `show --json` document: {"study", "metric", "mode", "stages": [...],
    "ensembles": [...]}."""
    study = summary.study
    stages = [stage_document(s) for s in summary.stages]
    ensembles = [ensemble_document(e) for e in summary.ensembles]
    return {
        "study": study.name,
        "metric": study.metric,
        "mode": study.mode,
        "stages": stages,
        "ensembles": ensembles,
    }


__all__ = ["best_json", "ensemble_document", "flag_json", "stage_document", "study_document"]
