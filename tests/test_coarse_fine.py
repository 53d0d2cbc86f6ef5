"""Coarse -> (widen) -> fine with the synthetic trainable whose optimum is known."""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from hpsearch.driver import (
    NoProposalError,
    begin,
    finish_stage,
    plan_stage,
    run_stage,
    start_or_resume,
)
from hpsearch.planner import NewStage, StageRequest
from hpsearch.ranking import ranked
from hpsearch.registry import qualified
from hpsearch.runtime.executor import InProcessExecutor, Workload
from hpsearch.spec import StudySpec, load_spec
from storage import StageKind, StageRecord, Store
from tests.conftest import query, run_cli
from trainables.synthetic import LOG_DIMS, quality

# lr's optimum (10**-2.5) lies inside its range; reg's (10**1.5) lies above its range.
SPEC = """
name = "{name}"
trainable = "{trainable}"
metric = "val_acc"
mode = "max"
seed = 1

[fixed]
noise = 0.0

[space]
{space}

[coarse]
trials = 40
epochs = 2

[fine]
trials = 20
epochs = 6
top = 8
"""
LR_REG = """
lr  = { type = "loguniform", low = 1e-6, high = 1e1 }
reg = { type = "loguniform", low = 1e-5, high = 1e1 }
"""


def write_spec(
    tmp_path: Path, name: str = "syn", space: str = LR_REG, trainable: str = "synthetic"
) -> StudySpec:
    path = tmp_path / f"{name}.toml"
    path.write_text(SPEC.format(name=name, space=space, trainable=trainable))
    return load_spec(path)


def next_plan(
    store: Store, spec: StudySpec, kind: str, *, trials: int, epochs: int, **kw
) -> NewStage:
    """The planner's new stage on the records of `store` (fails if it would resume)."""
    plan = plan_stage(store, spec, StageRequest(StageKind(kind), trials, epochs, **kw))
    assert isinstance(plan, NewStage)
    return plan


def run(store: Store, spec: StudySpec, plan: StageRequest | NewStage) -> StageRecord:
    if isinstance(plan, StageRequest):
        _, stage, _ = start_or_resume(store, spec, plan)
    else:
        _, stage, _ = begin(store, spec, plan)
    workload = Workload(qualified(spec.trainable), spec.metric, spec.directory)
    run_stage(store, spec, stage, InProcessExecutor(workload))
    finish_stage(store, spec, stage)
    done = store.stage(stage.stage_id)
    assert done is not None
    return done


def coarse(store: Store, spec: StudySpec) -> StageRecord:
    plan = StageRequest(StageKind.COARSE, spec.coarse.trials, spec.coarse.epochs)
    return run(store, spec, plan)


def fine(store: Store, spec: StudySpec, **kw) -> StageRecord:
    plan = next_plan(store, spec, "fine", trials=spec.fine.trials, epochs=spec.fine.epochs, **kw)
    return run(store, spec, plan)


def best_quality(store: Store, stage: StageRecord) -> float:
    return quality(ranked(store.trials(stage.stage_id), "max")[0].params)


def test_edge_flag_widens_and_fine_gets_closer_to_the_optimum(tmp_path: Path, db_url: str) -> None:
    spec, store = write_spec(tmp_path), Store(db_url)
    first = coarse(store, spec)
    flags = {f.param: f for f in store.flags(first.stage_id)}
    assert set(flags) == {"reg"} and flags["reg"].side == "high"
    assert "widen the range upward" in flags["reg"].message
    proposal = first.proposal
    assert proposal is not None
    assert proposal["reg"]["high"] > 10.0
    lr = proposal["lr"]
    assert lr["low"] < 10 ** LOG_DIMS["lr"] < lr["high"]
    assert math.log10(lr["high"] / lr["low"]) < 7  # narrower than the coarse 7 decades
    assert proposal["lr"]["reason"] and proposal["reg"]["reason"]

    second = fine(store, spec)
    assert second.kind == "fine" and second.parent_stage_id == first.stage_id
    # the default fine stage: ASHA, drawing trials until 20 x 6 epochs are spent
    assert second.epochs == 6 and second.epoch_budget == 120 and second.n_trials > 20
    assert len(store.trials(second.stage_id)) == second.n_trials
    assert second.ranges == {
        p: {k: v for k, v in r.items() if k != "reason"} for p, r in proposal.items()
    }
    assert best_quality(store, second) > best_quality(store, first)


def test_fine_stage_reruns_the_best_coarse_configs_first(tmp_path: Path, db_url: str) -> None:
    space = LR_REG + 'hidden = { type = "lograndint", low = 8, high = 1024 }\n'
    spec, store = write_spec(tmp_path, space=space), Store(db_url)
    first = coarse(store, spec)
    plan = next_plan(store, spec, "fine", trials=spec.fine.trials, epochs=spec.fine.epochs)
    assert len(plan.keep) == 3 and all(type(c["hidden"]) is int for c in plan.keep)
    second = run(store, spec, plan)
    best = [t.params for t in ranked(store.trials(first.stage_id), "max")[:3]]
    rerun = [t.params for t in store.trials(second.stage_id)[:3]]
    assert rerun == best  # [fine] keep = 3 by default
    assert ranked(store.trials(second.stage_id), "max")[0].best_value > (
        ranked(store.trials(first.stage_id), "max")[0].best_value  # type: ignore[operator]
    )


def test_keep_zero_samples_every_fine_config(tmp_path: Path, db_url: str) -> None:
    spec, store = write_spec(tmp_path), Store(db_url)
    spec = replace(spec, fine=replace(spec.fine, keep=0))
    first = coarse(store, spec)
    assert next_plan(store, spec, "fine", trials=5, epochs=2).keep == ()
    spec = replace(spec, fine=replace(spec.fine, keep=2))
    kept = next_plan(store, spec, "fine", trials=5, epochs=2).keep
    assert list(kept) == [t.params for t in ranked(store.trials(first.stage_id), "max")[:2]]


def test_top_k_recomputes_the_proposal(tmp_path: Path, db_url: str) -> None:
    spec, store = write_spec(tmp_path), Store(db_url)
    first = coarse(store, spec)
    plan = next_plan(store, spec, "fine", trials=5, epochs=2, top=1)
    assert plan.parent_stage_id == first.stage_id
    one = plan.space.dimensions["lr"]
    assert first.proposal is not None
    stored = first.proposal["lr"]
    assert math.log10(one.high / one.low) < math.log10(stored["high"] / stored["low"])


def test_choice_only_space_keeps_the_choices_of_the_top_trials(tmp_path: Path, db_url: str) -> None:
    space = 'update = { type = "choice", values = ["sgd", "adagrad", "adam"] }'
    spec, store = write_spec(tmp_path, space=space), Store(db_url)
    first = coarse(store, spec)  # adam is best; sgd and adagrad tie below it
    assert store.flags(first.stage_id) == []
    assert first.proposal is not None
    assert first.proposal["update"]["values"] == ["adam"]
    assert "dropped sgd, adagrad" in first.proposal["update"]["reason"]
    second = fine(store, spec, top=20)  # recomputed: the top 20 hold all three choices
    assert second.ranges["update"]["values"] == ["sgd", "adagrad", "adam"]


FAILING = """
def train(params, *, epochs, seed):
    raise RuntimeError("broken trainable")
    yield {}
"""


def test_all_trials_failed_gives_no_proposal_and_a_clear_error(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "broken_cf.py").write_text(textwrap.dedent(FAILING))
    spec = write_spec(tmp_path, trainable="broken_cf:train")
    store = Store(db_url)
    first = coarse(store, spec)
    assert first.status == "finished" and first.proposal is None
    with pytest.raises(NoProposalError, match=r"no trial completed \(40 failed\): nothing to"):
        next_plan(store, spec, "fine", trials=5, epochs=2)


def test_one_completed_trial_is_enough_for_a_proposal(tmp_path: Path, db_url: str) -> None:
    spec, store = write_spec(tmp_path), Store(db_url)
    plan = StageRequest(StageKind.COARSE, 1, 2)
    first = run(store, spec, plan)
    if first.proposal is None:  # the one trial diverged (lr > 10**0.5): try another seed
        first = run(store, spec, StageRequest(StageKind.COARSE, 1, 2, seed=99))
    assert first.proposal is not None
    params = store.trials(first.stage_id)[0].params
    for name in ("lr", "reg"):
        assert first.proposal[name]["low"] < params[name] < first.proposal[name]["high"]


def test_fine_without_a_coarse_stage_is_refused(tmp_path: Path, db_url: str) -> None:
    spec, store = write_spec(tmp_path), Store(db_url)
    with pytest.raises(NoProposalError, match="no stages yet .* run `hpsearch coarse"):
        next_plan(store, spec, "fine", trials=5, epochs=2)


def test_cli_coarse_widen_fine_show(tmp_path: Path, ray_address: str) -> None:
    spec = write_spec(tmp_path).path
    db = tmp_path / "h.db"
    base = ("--db", str(db), "--address", ray_address, "-q")
    result = run_cli("coarse", str(spec), *base, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"warning: reg: \d+ of the top 8 in the top 10% of \[1e-05, 10\] \(log scale\), "
        r"[\d.]+ expected by chance \(p[=<][\d.e-]+\), ranked with the other parameters' "
        r"effects taken out; the metric improves toward that end",
        result.stderr,
    )
    assert f"next: hpsearch coarse {spec} --db {db} --widen" in result.stdout

    result = run_cli("coarse", str(spec), *base, "--widen", "--trials", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli("fine", str(spec), *base, "--trials", "8", "--epochs", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stages = "SELECT stage_id, kind, parent_stage_id, n_trials, epochs, epoch_budget FROM stages"
    *coarse, (fine_id, kind, parent, n_fine, epochs, budget) = query(db, stages)
    assert coarse == [(1, "coarse", None, 40, 2, None), (2, "coarse", 1, 20, 2, None)]
    # the fine stage (ASHA by default, rung at epoch 1) drew trials until 8 x 4 were spent
    assert (fine_id, kind, parent, epochs, budget) == (3, "fine", 2, 4, 32) and n_fine >= 8
    stopped = query(db, "SELECT count(*) FROM trials WHERE stage_id = 3 AND status = 'stopped'")
    assert n_fine > 8 or stopped == [(0,)]  # the epochs a rung saved bought more trials
    assert query(db, "SELECT count(*) FROM trials WHERE stage_id = 3") == [(n_fine,)]

    shown = run_cli("show", "syn", "--db", str(db), "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["study"] == "syn"
    first, second, third = doc["stages"]
    assert (first["kind"], first["parent"], third["parent"]) == ("coarse", None, 2)
    assert first["flags"][0]["param"] == "reg" and first["flags"][0]["side"] == "high"
    assert 0.9 <= first["flags"][0]["position"] <= 1.0
    assert second["ranges"] == first["proposal"]  # the widened stage sampled the proposal
    assert second["ranges"]["reg"]["high"] > 10
    assert sum(third["counts"].values()) == n_fine and third["epoch_budget"] == 32
    assert set(third["counts"]) <= {"completed", "stopped"}
    assert set(third["best"]) >= {"trial", "value", "params"}
    assert set(third["ranges"]["lr"]) == {"type", "low", "high"}
    assert third["proposal"]["lr"]["type"] == "loguniform"

    text = run_cli("show", str(spec), "--db", str(db), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert (
        f"stage 3 fine (finished, from stage 2): {n_fine} trials of up to 4 epochs "
        "(ASHA: drawn until 32 epochs were spent)"
    ) in text.stdout
    assert "flag: reg: " in text.stdout and "expected by chance" in text.stdout


def test_cli_from_stage_of_another_study_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    other, store = write_spec(tmp_path, name="other"), Store(str(db))
    coarse(store, other)
    spec = write_spec(tmp_path, name="mine")
    store.ensure_study("mine", qualified("synthetic"), "val_acc", "max")
    result = run_cli("fine", str(spec.path), "--db", str(db), "--from-stage", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "hpsearch: error: --from-stage 1: stage 1 belongs to study 'other', not 'mine'"
    )
    assert query(db, "SELECT count(*) FROM stages") == [(1,)]


def test_cli_show_unknown_study_and_missing_db(tmp_path: Path) -> None:
    result = run_cli("show", "nope", "--db", str(tmp_path / "absent.db"), cwd=tmp_path)
    assert result.returncode == 2 and "no database at" in result.stderr
    assert not (tmp_path / "absent.db").exists()
