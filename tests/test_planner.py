"""The planner alone: records in, the next stage out (no database, no Ray)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from hpsearch import planner
from hpsearch.planner import History, NoProposalError, Resume, StageRequest, Start
from hpsearch.spec import StudySpec, parse_spec
from storage import StageKind, StageRecord, StageStatus, Status, StudyRecord, TrialRecord

SPEC: dict[str, Any] = {
    "name": "plan",
    "trainable": "synthetic",
    "metric": "val_acc",
    "mode": "max",
    "seed": 5,
    "space": {
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
        "width": {"type": "lograndint", "low": 8, "high": 512},
    },
    "fine": {"keep": 2, "top": 4},
}
STUDY = StudyRecord(1, "plan", "trainables.synthetic:train", "val_acc", "max")
PROPOSAL = {
    "lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1, "reason": "narrowed"},
    "width": {"type": "lograndint", "low": 16, "high": 64, "reason": "narrowed"},
}


def spec() -> StudySpec:
    return parse_spec(SPEC, Path("plan.toml"))


def stage(
    stage_id: int,
    kind: StageKind,
    status: StageStatus = StageStatus.FINISHED,
    proposal: dict[str, Any] | None = PROPOSAL,
    study_id: int = 1,
) -> StageRecord:
    ranges = spec().space.to_dict()
    return StageRecord(stage_id, study_id, kind, None, status, 0, 2, 6, ranges, {}, proposal)


def trials(values: list[float | None]) -> list[TrialRecord]:
    """One trial per value (None: failed); the params make each trial recognisable."""
    return [
        TrialRecord(
            i + 1,
            1,
            i,
            Status.FAILED if v is None else Status.COMPLETED,
            0,
            1,
            {"lr": 10.0 ** -(i + 1), "width": 16.0 + i},
            best_value=v,
        )
        for i, v in enumerate(values)
    ]


def history(*stages: StageRecord) -> History:
    return History(STUDY, stages, "h.db")


def test_an_unfinished_stage_of_the_kind_is_resumed_whatever_was_asked() -> None:
    running = stage(2, StageKind.FINE, StageStatus.RUNNING)
    past = history(stage(1, StageKind.COARSE), running)
    request = StageRequest(StageKind.FINE, 99, 9, seed=1, from_stage=1, top=3)
    assert planner.decide(spec(), request, past) == Resume(running)
    assert planner.decide(spec(), StageRequest(StageKind.COARSE, 5, 2), past) == Start(None)


def test_fine_takes_the_latest_finished_coarse_and_widen_the_latest_finished_stage() -> None:
    past = history(
        stage(1, StageKind.COARSE),
        stage(2, StageKind.COARSE),
        stage(3, StageKind.FINE),
    )
    fine = planner.decide(spec(), StageRequest(StageKind.FINE, 5, 2), past)
    widen = planner.decide(spec(), StageRequest(StageKind.COARSE, 5, 2, widen=True), past)
    assert isinstance(fine, Start) and fine.parent is not None and fine.parent.stage_id == 2
    assert isinstance(widen, Start) and widen.parent is not None and widen.parent.stage_id == 3


def test_from_stage_must_exist_belong_to_the_study_and_be_finished() -> None:
    request = StageRequest(StageKind.FINE, 5, 2, from_stage=4)
    with pytest.raises(NoProposalError, match=r"^--from-stage 4: no such stage in h.db$"):
        planner.decide(spec(), request, history(stage(1, StageKind.COARSE)))
    other = History(STUDY, (), "h.db", stage(4, StageKind.COARSE, study_id=2), "theirs")
    with pytest.raises(NoProposalError, match=r"belongs to study 'theirs', not 'plan'$"):
        planner.decide(spec(), request, other)
    unfinished = stage(4, StageKind.COARSE, StageStatus.RUNNING)
    past = History(STUDY, (unfinished,), "h.db", unfinished, "plan")
    with pytest.raises(NoProposalError, match=r"is not finished: rerun `hpsearch coarse`"):
        planner.decide(spec(), request, past)


def test_a_new_fine_stage_reruns_the_parents_best_then_samples_the_proposal() -> None:
    parent = stage(1, StageKind.COARSE)
    past = history(parent)
    request = StageRequest(StageKind.FINE, 6, 4)
    done = trials([0.5, None, 0.9, 0.7, 0.1, 0.2])
    plan = planner.new_stage(spec(), request, past, Start(parent), done)
    assert plan.seed == 5 + 1  # the spec's seed plus the number of earlier stages
    assert plan.parent_stage_id == 1 and plan.epochs == 4
    assert plan.keep == ({"lr": 1e-3, "width": 18}, {"lr": 1e-4, "width": 19})  # keep = 2
    assert len(plan.configs) == len(plan.seeds) == 6
    for config in plan.configs[len(plan.keep) :]:
        assert 1e-3 <= config["lr"] <= 1e-1 and 16 <= config["width"] <= 64
        assert type(config["width"]) is int
    again = planner.new_stage(spec(), request, past, Start(parent), done)
    assert again == plan  # the same records and seed give the same stage


def test_no_completed_trial_in_the_parent_means_no_proposal() -> None:
    parent = stage(1, StageKind.COARSE, proposal=None)
    request = StageRequest(StageKind.FINE, 6, 4)
    with pytest.raises(NoProposalError, match=r"^stage 1: no trial completed \(3 failed\): "):
        planner.new_stage(spec(), request, history(parent), Start(parent), trials([None] * 3))


def test_top_recomputes_the_proposal_from_the_parents_trials() -> None:
    parent = stage(1, StageKind.COARSE)
    request = StageRequest(StageKind.FINE, 4, 2, top=1)
    done = trials([0.5, 0.9, 0.7])
    plan = planner.new_stage(spec(), request, history(parent), Start(parent), done)
    lr = plan.space.to_dict()["lr"]  # around the one best trial's lr, not the stored range
    assert lr["low"] < 1e-2 < lr["high"] and math.log10(lr["high"] / lr["low"]) < 1
    assert plan.keep == ({"lr": 1e-2, "width": 17},)  # keep is capped by top
