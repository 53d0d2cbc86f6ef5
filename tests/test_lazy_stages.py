"""Lazy, bounded stages: configurations sampled and inserted chunk by chunk, the driver's
reads bounded by a chunk, the top N and the analysis sample (in-process executor, no Ray)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from hpsearch import driver, planner
from hpsearch.driver import (
    Progress,
    _Tracker,
    begin,
    finish_stage,
    plan_stage,
    run_stage,
    saved,
)
from hpsearch.narrowing import analyze
from hpsearch.planner import StageRequest
from hpsearch.runtime.worker import Ended, EpochDone, Started
from hpsearch.space import Space
from hpsearch.spec import StudySpec
from storage import Batch, Mode, StageKind, Store
from storage._models import Trial
from tests.conftest import db_rows
from tests.test_driver import executor, make_study


def trial_configs(store: Store, stage_id: int) -> list[tuple[dict[str, Any], int]]:
    return [(t.params, t.seed) for t in store.trials(stage_id)]


def request(trials: int, epochs: int = 3) -> StageRequest:
    return StageRequest(StageKind.COARSE, trials, epochs)


def test_trial_i_is_fixed_by_the_seed_whatever_the_chunks_and_the_stage_size() -> None:
    space = make_space()
    whole = planner.configurations(space, 7, 0, 2300)
    for size in (333, 999, 1000):
        configs: list[dict[str, Any]] = []
        seeds: list[int] = []
        for start in range(0, 2300, size):
            more, more_seeds = planner.configurations(space, 7, start, min(start + size, 2300))
            configs += more
            seeds += more_seeds
        assert (configs, seeds) == whole
    assert planner.configurations(space, 7, 995, 1002)[0] == whole[0][995:1002]
    small = planner.sample(StageKind.COARSE, space, 50, 2, 7)
    assert (small.configs, small.seeds) == (whole[0][:50], whole[1][:50])
    assert len(set(whole[1])) > 2290  # seeds differ between trials and between blocks
    assert planner.configurations(space, 8, 0, 50) != (small.configs, small.seeds)


def make_space() -> Space:
    return Space.from_dict(
        {
            "x": {"type": "loguniform", "low": 1e-3, "high": 1.0},
            "k": {"type": "choice", "values": ["a", "b"]},
        }
    )


def test_chunked_and_resumed_stage_has_the_trials_of_an_unchunked_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_study(tmp_path, kinds='["ok"]')
    db = str(tmp_path / "chunked.db")
    store = Store(db)
    _, stage, _ = begin(store, spec, plan_stage(store, spec, request(30)), chunk=4)
    assert db_rows(db, "SELECT count(*), (SELECT n_trials FROM stages) FROM trials") == [(4, 30)]
    monkeypatch.setenv("HPSEARCH_TEST_INTERRUPT", "1")  # the 10th trial raises Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        run_stage(store, spec, stage, executor(spec), chunk=4)
    assert db_rows(db, "SELECT count(*) FROM trials") == [(12,)]  # 3 chunks taken, no more
    interrupted = saved(store, spec.name, StageKind.COARSE)
    assert interrupted is not None and interrupted.inserted == 12
    assert interrupted.counts == dict(db_rows(db, "SELECT status, count(*) FROM trials GROUP BY 1"))
    assert interrupted.counts["completed"] == 9

    monkeypatch.delenv("HPSEARCH_TEST_INTERRUPT")
    _, again, resumed = begin(store, spec, plan_stage(store, spec, request(30)), chunk=5)
    assert resumed
    counts = run_stage(store, spec, again, executor(spec), resumed=True, chunk=5)
    assert counts == {"completed": 30}
    assert saved(store, spec.name, StageKind.COARSE) is not None  # not finished yet
    finish_stage(store, spec, again)
    assert saved(store, spec.name, StageKind.COARSE) is None

    whole = Store(str(tmp_path / "whole.db"))
    _, unchunked, _ = begin(whole, spec, plan_stage(whole, spec, request(30)))
    run_stage(whole, spec, unchunked, executor(spec))
    assert trial_configs(store, stage.stage_id) == trial_configs(whole, unchunked.stage_id)


def test_a_huge_stage_starts_without_sampling_all_its_trials(tmp_path: Path) -> None:
    """`--trials 10000000`: the stage row and a first chunk, then trials as they run."""
    spec = make_study(tmp_path, kinds='["ok"]')
    db = str(tmp_path / "h.db")
    store = Store(db)
    _, stage, _ = begin(store, spec, plan_stage(store, spec, request(10_000_000, epochs=1)))
    seen: list[tuple[int, int]] = []

    def stop_after_some(progress: Progress) -> None:
        seen.append((progress.done, db_rows(db, "SELECT count(*) FROM trials")[0][0]))
        if progress.done >= 1500:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(store, spec, stage, executor(spec), stop_after_some)
    assert seen[0] == (0, 1000)  # before the first trial: one chunk inserted
    assert all(inserted <= done + 1000 for done, inserted in seen)
    interrupted = saved(store, spec.name, StageKind.COARSE)
    assert interrupted is not None and interrupted.stage.n_trials == 10_000_000
    assert interrupted.inserted == db_rows(db, "SELECT count(*) FROM trials")[0][0] <= 3000
    completed = db_rows(db, "SELECT count(*) FROM trials WHERE status = 'completed'")[0][0]
    assert interrupted.counts["completed"] == completed >= 1500


@pytest.fixture
def reads() -> Iterator[tuple[list[int], list[int]]]:
    """Per SQL statement: trial rows loaded, and the trials whose params it reads (the ids in
    its IN list, or the size of its BETWEEN range)."""
    from sqlalchemy.engine import Engine

    trial_rows: list[int] = []
    param_trials: list[int] = []

    def statement(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        trial_rows.append(0)
        if "FROM params" in sql and "WHERE params.trial_id" in sql:
            param_trials.append(params[1] - params[0] + 1 if "BETWEEN" in sql else len(params))

    def loaded(*_: Any) -> None:
        trial_rows[-1] += 1

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Trial, "load", loaded)
    yield trial_rows, param_trials
    event.remove(Trial, "load", loaded)
    event.remove(Engine, "before_cursor_execute", statement)


def test_the_driver_reads_a_chunk_the_top_trials_and_a_sample_never_the_whole_stage(
    tmp_path: Path, reads: tuple[list[int], list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "ANALYSIS_TRIALS", 100)  # 10,000 in use: the same reads, scaled
    spec = make_study(tmp_path, kinds='["ok"]')
    store = Store(str(tmp_path / "h.db"))
    plan = plan_stage(store, spec, request(1200, epochs=1))
    _, stage, _ = begin(store, spec, plan, chunk=50)
    assert run_stage(store, spec, stage, executor(spec), chunk=50) == {"completed": 1200}
    finished = finish_stage(store, spec, stage)
    assert finished.analysis.completed >= 100 and len(finished.top) == 10
    trial_rows, param_trials = (n for n in reads)
    assert max(trial_rows) <= 100  # a chunk of unfinished trials, the sample, or the top N
    # the first chunk (the rest was new), the sample of every 12th trial, twice the top N
    assert sum(trial_rows) <= 50 + 100 + 2 * 10
    assert param_trials and max(param_trials) <= 12 * 100  # params: by id range or id list


def test_an_ended_trial_leaves_nothing_in_the_tracker(tmp_path: Path) -> None:
    spec = make_study(tmp_path, kinds='["ok"]')
    store = Store(str(tmp_path / "h.db"))
    _, stage, _ = begin(store, spec, plan_stage(store, spec, request(2)))
    tracker = _Tracker(spec.metric, Mode.MAX, Progress(stage, total=2, left=2))
    batch = Batch()
    tracker.apply([Started(1, 1, "n"), EpochDone(1, 1, 1, {"val_acc": 0.5})], batch)
    assert tracker.best == {1: (0.5, 1)} and tracker.epochs == {1: 1}
    tracker.apply([Ended(1, 1, "completed", None, 0.1)], batch)
    assert tracker.best == {} and tracker.epochs == {}
    assert batch.finished[0]["best_value"] == 0.5 and batch.finished[0]["epochs_run"] == 1


def test_analysis_weighs_every_trial_of_a_stage_up_to_the_limit(
    tmp_path: Path, db_url: str
) -> None:
    spec = edge_study(tmp_path)
    store = Store(db_url)
    _, stage, _ = begin(store, spec, plan_stage(store, spec, request(60, epochs=1)))
    run_stage(store, spec, stage, executor(spec))
    every = store.trials(stage.stage_id)
    finished = finish_stage(store, spec, stage)
    space = Space.from_dict(stage.ranges)
    reference = analyze(space, every, spec.mode, top=spec.fine.top, edge=spec.fine.edge)
    assert finished.analysis == reference and reference.completed == 60
    assert [f.side for f in reference.flags if f.param == "x"] == ["high"]  # the rule fired


def test_a_larger_stage_is_weighed_on_every_kth_trial_and_its_best(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "ANALYSIS_TRIALS", 40)  # 120 trials: every 3rd
    spec = edge_study(tmp_path)
    store = Store(db_url)
    _, stage, _ = begin(store, spec, plan_stage(store, spec, request(120, epochs=1)))
    run_stage(store, spec, stage, executor(spec))
    every = store.trials(stage.stage_id)
    best = {t.trial_id for t in store.top_trials(stage.stage_id, spec.mode, 10)}
    weighed = [t for t in every if t.number % 3 == 0 or t.trial_id in best]
    finished = finish_stage(store, spec, stage)
    space = Space.from_dict(stage.ranges)
    reference = analyze(space, weighed, spec.mode, top=spec.fine.top, edge=spec.fine.edge)
    assert finished.analysis == reference and 40 <= reference.completed < 50
    assert finished.analysis.best is not None
    assert finished.analysis.best.trial_id == finished.top[0].trial_id  # the stage's best
    assert [f.side for f in reference.flags if f.param == "x"] == ["high"]


EDGE_TRAINABLE = """
def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        yield {"val_acc": params["x"] + 0.001 * params["n"]}
"""

EDGE_SPEC = """
name = "edge"
trainable = "{module}:train"
metric = "val_acc"
mode = "max"

[space]
x = {{ type = "uniform", low = 0.0, high = 1.0 }}
n = {{ type = "randint", low = 1, high = 4 }}
kind = {{ type = "choice", values = ["a", "b"] }}
"""


def edge_study(tmp_path: Path) -> StudySpec:
    """The metric grows with x (so the high side of x is flagged); n ties in ranks."""
    from hpsearch.spec import load_spec

    module = f"edge_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{module}.py").write_text(EDGE_TRAINABLE)
    (tmp_path / "edge.toml").write_text(EDGE_SPEC.format(module=module))
    return load_spec(tmp_path / "edge.toml")
