"""The stage driver with the in-process executor: outcomes, batching, resume (SQLite and
PostgreSQL)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from hpsearch.driver import Progress, _Tracker, run_stage, start_or_resume
from hpsearch.planner import StageRequest
from hpsearch.runtime.executor import InProcessExecutor, Workload
from hpsearch.runtime.worker import EpochDone, Event, Lost, Started
from hpsearch.spec import StudySpec, load_spec
from storage import Batch, Mode, StageKind, Store
from tests.conftest import db_rows

TRAINABLE = """
import os

CALLS = []

def train(params, *, epochs, seed):
    x = params["x"]
    assert type(params["n"]) is int and type(params["width"]) is int, params
    CALLS.append(x)
    for epoch in range(1, epochs + 1):
        if os.environ.get("HPSEARCH_TEST_INTERRUPT") and len(CALLS) == 10 and epoch == 2:
            raise KeyboardInterrupt
        if params["kind"] == "raise" and epoch == 2:
            raise RuntimeError("boom in epoch 2")
        loss = float("nan") if params["kind"] == "nan" and epoch == 2 else x / epoch
        yield {"val_acc": 1 - loss / 10, "val_loss": loss, "train_loss": loss}

def not_a_generator(params, *, epochs, seed):
    return [{"val_acc": 1.0}]
"""

SPEC = """
name = "drv"
trainable = "{module}:train"
metric = "val_acc"
mode = "max"

[space]
x = {{ type = "uniform", low = 0.01, high = 1.0 }}
kind = {{ type = "choice", values = {kinds} }}
n = {{ type = "randint", low = 1, high = 5 }}
width = {{ type = "choice", values = [64, 128] }}

[coarse]
trials = 30
epochs = 3
"""


def make_study(tmp_path: Path, kinds: str = '["ok", "raise", "nan"]') -> StudySpec:
    module = "train_" + re.sub(r"\W", "_", tmp_path.name)  # unique: imports are cached
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(TRAINABLE))
    (tmp_path / "study.toml").write_text(SPEC.format(kinds=kinds, module=module))
    return load_spec(tmp_path / "study.toml")


def coarse_plan(spec: StudySpec) -> StageRequest:
    return StageRequest(StageKind.COARSE, spec.coarse.trials, spec.coarse.epochs)


def executor(spec: StudySpec) -> InProcessExecutor:
    return InProcessExecutor(Workload(spec.trainable, spec.metric, spec.directory))


def test_completed_failed_and_diverged_side_by_side(tmp_path: Path, db_url: str) -> None:
    spec = make_study(tmp_path)
    store = Store(db_url)
    _, stage, resumed = start_or_resume(store, spec, coarse_plan(spec))
    assert not resumed
    counts = run_stage(store, spec, stage, executor(spec))
    trials = {t.number: t for t in store.trials(stage.stage_id)}
    by_kind = {
        k: [t for t in trials.values() if t.params["kind"] == k] for k in ("ok", "raise", "nan")
    }
    assert all(by_kind.values()), "the seed should draw every kind"
    assert {t.status for t in by_kind["ok"]} == {"completed"}
    assert {t.status for t in by_kind["raise"]} == {"failed"}
    assert all("RuntimeError: boom in epoch 2" in (t.error or "") for t in by_kind["raise"])
    assert {t.status for t in by_kind["nan"]} == {"diverged"}
    assert all(re.search(r"val_acc=nan.* at epoch 2$", t.error or "") for t in by_kind["nan"])
    assert counts == {
        s: len(by_kind[k])
        for k, s in (("ok", "completed"), ("raise", "failed"), ("nan", "diverged"))
    }
    rows: dict[str, int] = dict(
        db_rows(  # type: ignore[arg-type]
            db_url,
            "SELECT t.status, count(*) FROM metrics m "
            "JOIN trials t USING (trial_id) GROUP BY t.status",
        )
    )
    assert rows["completed"] == len(by_kind["ok"]) * 3 * 3  # epochs x metrics
    assert rows["failed"] == len(by_kind["raise"]) * 1 * 3  # stopped in epoch 2
    assert rows["diverged"] == len(by_kind["nan"]) * 2 * 3  # the non-finite epoch is kept
    best = store.top_trials(stage.stage_id, "max", 1)[0]
    assert best.best_value == max(t.best_value for t in by_kind["ok"])  # type: ignore[type-var]
    assert best.best_epoch == 3


def test_stage_resumes_only_unfinished_trials_as_a_new_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    spec = make_study(tmp_path, kinds='["ok"]')
    store = Store(db_url)
    _, stage, _ = start_or_resume(store, spec, coarse_plan(spec))
    monkeypatch.setenv("HPSEARCH_TEST_INTERRUPT", "1")
    with pytest.raises(KeyboardInterrupt):
        run_stage(store, spec, stage, executor(spec))
    first = {t.trial_id: t for t in store.trials(stage.stage_id)}
    done_before = {i for i, t in first.items() if t.status == "completed"}
    assert 0 < len(done_before) < 30
    rows_before = db_rows(db_url, "SELECT * FROM metrics ORDER BY 1, 2, 3, 4")

    monkeypatch.delenv("HPSEARCH_TEST_INTERRUPT")
    _, again, resumed = start_or_resume(store, spec, coarse_plan(spec))
    assert resumed and again.stage_id == stage.stage_id
    run_stage(store, spec, again, executor(spec))
    after = {t.trial_id: t for t in store.trials(stage.stage_id)}
    assert {t.status for t in after.values()} == {"completed"}
    assert {i: t.params for i, t in after.items()} == {i: t.params for i, t in first.items()}
    rows_after = db_rows(db_url, "SELECT * FROM metrics ORDER BY 1, 2, 3, 4")
    assert set(rows_before) <= set(rows_after)  # nothing recorded before changed
    interrupted = [i for i, t in first.items() if t.status == "running"]
    assert interrupted and all(after[i].attempts == 2 for i in interrupted)
    assert all(after[i].attempts == 1 for i in done_before)
    assert len(rows_after) == 30 * 3 * 3 + 3  # plus epoch 1 of the interrupted attempt


def test_finished_stage_is_not_resumed_and_next_stage_samples_anew(
    tmp_path: Path, db_url: str
) -> None:
    spec = make_study(tmp_path, kinds='["ok"]')
    store = Store(db_url)
    _, first, _ = start_or_resume(store, spec, coarse_plan(spec))
    run_stage(store, spec, first, executor(spec))
    store.finish_stage(first.stage_id)
    _, second, resumed = start_or_resume(store, spec, coarse_plan(spec))
    assert not resumed and second.stage_id != first.stage_id
    assert second.seed != first.seed
    xs = lambda stage: [t.params["x"] for t in store.trials(stage.stage_id)]  # noqa: E731
    assert xs(first) != xs(second)


def test_same_seed_same_trials_in_another_database(tmp_path: Path, db_url: str) -> None:
    spec = make_study(tmp_path, kinds='["ok"]')
    params = []
    for db in (str(tmp_path / "a.db"), db_url):  # SQLite, then SQLite or PostgreSQL
        store = Store(db)
        _, stage, _ = start_or_resume(store, spec, coarse_plan(spec))
        params.append([(t.params, t.seed) for t in store.trials(stage.stage_id)])
    assert params[0] == params[1]


def test_a_lost_attempt_reaches_the_batch_instead_of_being_dropped(tmp_path: Path) -> None:
    spec = make_study(tmp_path, kinds='["ok"]')
    store = Store(str(tmp_path / "h.db"))
    _, stage, _ = start_or_resume(store, spec, coarse_plan(spec))
    tracker = _Tracker(spec.metric, Mode.MAX, Progress(stage, total=1, left=1))
    batch = Batch()
    events: list[Event] = [
        Started(7, 1, "node-a"),
        EpochDone(7, 1, 1, {"val_acc": 0.5}),
        Lost(7, 1, "worker lost: the node died"),
        Started(7, 2, "node-b"),
    ]
    tracker.apply(events, batch)
    assert len(batch) == 2 + 1 + 1 and not batch.finished
    assert tracker.best == {}  # the new attempt starts afresh
    store.record(batch)
    rows = db_rows(
        str(tmp_path / "h.db"),
        "SELECT attempt, node_id, outcome, reason FROM attempts WHERE trial_id = 7 ORDER BY 1",
    )
    assert rows == [
        (1, "node-a", "lost", "worker lost: the node died"),
        (2, "node-b", None, None),
    ]
