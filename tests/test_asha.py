"""ASHA inside a stage: the promotion rule, asynchronous arrivals, stopped trials that spend no
further epoch, retries, resume after kill -9, ranking at equal fidelity, and stages that draw
trials until their epoch budget is spent."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hpsearch.asha import EpochBudget, RungBoard, Schedule, at_equal_fidelity, fidelity, rebuild
from hpsearch.driver import (
    finish_stage,
    ranking_trials,
    run_stage,
    rung_board,
    saved,
    start_or_resume,
)
from hpsearch.planner import StageRequest, draws
from hpsearch.runtime.executor import InProcessExecutor, Workload
from hpsearch.runtime.worker import Ended, TrialTask, run_bundle
from hpsearch.spec import load_spec
from storage import StageKind, Status, Store, TrialRecord
from tests.conftest import db_rows, query, run_cli


def test_rungs_are_grace_times_powers_of_eta_below_the_epochs() -> None:
    assert Schedule("asha", 3, 1).rungs(27) == (1, 3, 9)
    assert Schedule("asha", 2, 2).rungs(17) == (2, 4, 8, 16)
    assert Schedule("asha", 3, 1).rungs(1) == ()
    assert Schedule("none").rungs(27) == ()


def test_promotion_rule_against_a_hand_computed_sequence() -> None:
    """eta = 3, mode max: the n-th arrival goes on iff fewer than max(1, n // 3) of the n
    values recorded so far (its own included) are strictly better than its own."""
    board = RungBoard([1], eta=3, mode="max", metric="val_acc")
    arrivals = [0.5, 0.4, 0.6, 0.6, 0.3, 0.55, 0.7, 0.58, 0.59]
    # n=1 keep 1: 0.5 first -> on; n=2 keep 1: 0.4 (0.5 better) -> stop; n=3 keep 1: 0.6 best
    # -> on; n=4 keep 1: 0.6 ties the best -> on; n=5 keep 1: 0.3 -> stop; n=6 keep 2: 0.55
    # (two 0.6 better) -> stop; n=7 keep 2: 0.7 best -> on; n=8 keep 2: 0.58 (0.6, 0.6, 0.7)
    # -> stop; n=9 keep 3: 0.59 (0.6, 0.6, 0.7 better: 3) -> stop
    expected = [True, False, True, True, False, False, True, False, False]
    got = [board.report(i, 1, v) is None for i, v in enumerate(arrivals)]
    assert got == expected
    assert board.report(5, 1, 0.55) == (
        "stopped at epoch 1: val_acc 0.55, rung's top 1/3 starts at 0.6"
    )
    assert board.report(99, 2, 0.0) is None  # not a rung: nothing asked, nothing recorded
    assert board.values(2) == {}


def test_min_mode_and_idempotent_reports() -> None:
    board = RungBoard([2], eta=2, mode="min", metric="loss")
    assert board.report(1, 2, 1.0) is None
    assert board.report(2, 2, 2.0) is not None  # n=2 keep 1: 1.0 is better (lower)
    assert board.report(3, 2, 0.5) is None
    # a retried attempt of trial 2 reports again (even with another value): same answer,
    # and its value is not counted twice
    assert board.report(2, 2, 0.1) == board.report(2, 2, 2.0)
    assert board.values(2) == {1: 1.0, 2: 2.0, 3: 0.5}


def test_asynchronous_arrivals_out_of_order_are_judged_on_what_is_recorded() -> None:
    """The same values in two arrival orders: no trial waits, so the decisions differ, and
    an early weak trial goes on where a late one with the same value stops."""
    values = {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.6, 4: 0.5, 5: 0.4}
    ascending = RungBoard([1], 3, "max", "m")
    on_ascending = {t: ascending.report(t, 1, values[t]) is None for t in sorted(values)[::-1]}
    descending = RungBoard([1], 3, "max", "m")
    on_descending = {t: descending.report(t, 1, values[t]) is None for t in sorted(values)}
    # worst first: 0.4 (n=1) on, 0.5 (n=2, best) on, 0.6 on, 0.7 on, 0.8 on, 0.9 on
    assert on_ascending == dict.fromkeys(values, True)
    # best first: 0.9 on, then every later one has 0.9 above it and keep stays 1 until n=6
    # (keep 2: 0.4 has five better) -> only the first goes on
    assert on_descending == {0: True, 1: False, 2: False, 3: False, 4: False, 5: False}
    # both boards recorded every value: later arrivals are judged on all of them
    assert ascending.values(1) == descending.values(1) == values


def _counting_trainable(calls: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    def train(params, *, epochs, seed):  # type: ignore[no-untyped-def]
        for epoch in range(1, epochs + 1):
            calls.append((params["id"], epoch))
            yield {"val_acc": params["q"] * epoch / epochs}

    return train


def test_a_stopped_trial_runs_no_further_epoch_in_a_bundle() -> None:
    calls: list[tuple[int, int]] = []
    fn = _counting_trainable(calls)
    board = RungBoard(Schedule("asha", 3, 1).rungs(9), 3, "max", "val_acc")  # rungs 1, 3
    tasks = [TrialTask(i, 1, {"id": i, "q": q}, 0, 9) for i, q in enumerate([0.9, 0.2, 0.95])]
    events = [e for batch in run_bundle(fn, tasks, "val_acc", "n", 0.0, board) for e in batch]
    ends = {e.trial_id: e for e in events if isinstance(e, Ended)}
    assert ends[1].status == Status.STOPPED and ends[1].error is not None
    assert ends[1].error.startswith("stopped at epoch 1: val_acc 0.02")
    assert [e for t, e in calls if t == 1] == [1]  # no second epoch computed
    assert ends[0].status == ends[2].status == Status.COMPLETED
    assert [e for t, e in calls if t == 0] == list(range(1, 10))


# -- ranking at equal fidelity --------------------------------------------------------------
def _trial(tid: int, status: str, epochs_run: int, best: float) -> TrialRecord:
    return TrialRecord(tid, 1, tid, status, 0, 1, {"x": tid}, best, epochs_run, epochs_run)


def test_fidelity_is_the_highest_level_reached_by_top_trials() -> None:
    trials = [
        _trial(0, "completed", 9, 0.9),
        _trial(1, "stopped", 3, 0.7),
        _trial(2, "stopped", 3, 0.8),
        _trial(3, "stopped", 1, 0.5),
        _trial(4, "diverged", 5, 0.95),
    ]
    assert fidelity(trials, 9, top=1) == 9
    assert fidelity(trials, 9, top=3) == 3  # trials 0, 1, 2 reached epoch 3
    assert fidelity(trials, 9, top=4) == 1
    assert fidelity(trials, 9, top=10) == 1  # nobody reaches 10: the lowest level
    assert fidelity([_trial(0, "completed", 9, 0.9)], 9, top=3) is None  # nothing stopped


def test_at_equal_fidelity_ranks_by_the_best_value_up_to_the_level() -> None:
    trials = [
        _trial(0, "completed", 9, 0.99),
        _trial(1, "stopped", 3, 0.7),
        _trial(2, "stopped", 1, 0.5),
    ]
    # trial 0 was worse than trial 1 at epoch 3 (a slow starter), better later
    rows = [(0, 1, 1, 0.2), (0, 1, 2, 0.3), (0, 1, 3, 0.6), (0, 1, 4, 0.9)]
    rows += [(1, 1, 1, 0.4), (1, 1, 3, 0.7), (2, 1, 1, 0.5)]
    rows += [(1, 0, 3, 0.99)]  # an earlier, lost attempt's row: not the trial's record
    ranked = at_equal_fidelity(trials, 3, 9, "max", rows)
    by_id = {t.trial_id: t for t in ranked}
    assert (by_id[0].status, by_id[0].best_value, by_id[0].best_epoch) == ("completed", 0.6, 3)
    assert (by_id[1].status, by_id[1].best_value) == ("completed", 0.7)
    assert by_id[2].status == "stopped"  # stopped before epoch 3: not ranked
    assert at_equal_fidelity(trials, 9, 9, "max", rows) == trials


# -- the driver: in-process stages ----------------------------------------------------------
TRAINABLE = """
import time
from pathlib import Path

CALLS = []
SLOW = Path(__file__).with_name("slow")  # seconds per epoch: a file, as Ray workers of a
# cluster started elsewhere do not see the command's environment

def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        CALLS.append(params["x"])
        if SLOW.exists():
            time.sleep(float(SLOW.read_text()))
        yield {"val_acc": params["x"] * (1 - 0.5 ** epoch)}
"""

SPEC = """
name = "asha"
trainable = "{module}:train"
metric = "val_acc"

[space]
x = {{ type = "uniform", low = 0.0, high = 1.0 }}

[coarse]
trials = {trials}
epochs = 9
schedule = "asha"
budget = "{budget}"
"""


def make_spec(tmp_path: Path, trials: int = 24, budget: str = "trials") -> Path:
    """A stage of `trials` trials of 9 epochs under ASHA (rungs 1 and 3); with `budget =
    "epochs"` it draws trials until 9 x `trials` epochs are spent."""
    module = "asha_" + re.sub(r"\W", "_", tmp_path.name)
    (tmp_path / f"{module}.py").write_text(TRAINABLE)
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(SPEC.format(module=module, trials=trials, budget=budget)))
    return path


def test_in_process_stage_stops_trials_and_ranks_at_equal_fidelity(tmp_path: Path) -> None:
    spec = load_spec(make_spec(tmp_path))
    store = Store(str(tmp_path / "a.db"))
    request = StageRequest(StageKind.COARSE, 24, 9)
    _, stage, _ = start_or_resume(store, spec, request)
    executor = InProcessExecutor(Workload(spec.trainable, spec.metric, tmp_path))
    counts = run_stage(store, spec, stage, executor)
    assert counts[Status.STOPPED] > 0 and counts[Status.COMPLETED] > 0
    rows = db_rows(
        str(tmp_path / "a.db"),
        "SELECT t.trial_id, t.status, t.epochs_run, t.error, count(m.epoch) FROM trials t "
        "JOIN metrics m ON m.trial_id = t.trial_id AND m.name = 'val_acc' GROUP BY t.trial_id",
    )
    for _tid, status, epochs_run, error, metric_rows in rows:
        assert metric_rows == epochs_run  # a stopped trial wrote no row past its rung
        if status == Status.STOPPED:
            assert epochs_run in (1, 3) and error.startswith(f"stopped at epoch {epochs_run}")
        else:
            assert status == Status.COMPLETED and epochs_run == 9
    ranked = ranking_trials(store, spec, stage)
    level = fidelity(store.trials(stage.stage_id), 9, spec.fine.top)
    assert level in (1, 3)
    done = [t for t in ranked if t.status == Status.COMPLETED]
    assert len(done) >= spec.fine.top and all(t.best_epoch <= level for t in done)
    store.close()


def test_resume_rebuilds_the_board_from_stored_rows(tmp_path: Path) -> None:
    """Decisions stored before a stop stand: a trial that went on past a rung goes on again,
    a stopped one stays stopped, and recorded values judge the next arrivals."""
    board = RungBoard([1, 3], 3, "max", "m")
    trials = [
        _trial(0, "running", 0, 0.0),
        _trial(1, "stopped", 1, 0.1),
        _trial(2, "running", 0, 0.0),
    ]
    trials[1] = TrialRecord(1, 1, 1, "stopped", 0, 1, {}, 0.1, 1, 1, error="stopped at epoch 1: x")
    rows = [(0, 1, 1, 0.2), (0, 1, 2, 0.25), (1, 1, 1, 0.1), (2, 1, 1, 0.9)]
    rebuild(board, trials, rows)
    assert board.values(1) == {0: 0.2, 1: 0.1, 2: 0.9}
    assert board.report(0, 1, 0.2) is None  # went on before: goes on, though 0.9 is better
    assert board.report(1, 1, 0.1) == "stopped at epoch 1: x"
    assert board.report(2, 1, 0.9) is None  # undecided before the stop: decided now
    assert board.report(3, 1, 0.15) is not None  # judged against the restored values


def test_rung_board_of_a_resumed_stage(tmp_path: Path) -> None:
    spec = load_spec(make_spec(tmp_path, trials=12))
    store = Store(str(tmp_path / "a.db"))
    _, stage, _ = start_or_resume(store, spec, StageRequest(StageKind.COARSE, 12, 9))
    run_stage(store, spec, stage, InProcessExecutor(Workload(spec.trainable, "val_acc", tmp_path)))
    board = rung_board(store, spec, stage, resumed=True)
    assert board is not None and board.rungs == (1, 3)
    assert len(board.values(1)) == 12
    stopped = {t.trial_id: t.error for t in store.trials(stage.stage_id) if t.status == "stopped"}
    for t in store.trials(stage.stage_id):
        value = board.values(1)[t.trial_id]
        expected = stopped.get(t.trial_id) if t.epochs_run == 1 else None
        assert board.report(t.trial_id, 1, value) == expected
    store.close()


def test_spec_schedule_keys_are_checked(tmp_path: Path) -> None:
    path = make_spec(tmp_path)
    path.write_text(path.read_text().replace('schedule = "asha"', 'schedule = "hyperband"'))
    from hpsearch.errors import SpecError

    with pytest.raises(SpecError, match=r"coarse.schedule: must be 'asha' or 'none'"):
        load_spec(path)
    path.write_text(path.read_text().replace('"hyperband"', '"asha"\neta = 1'))
    with pytest.raises(SpecError, match=r"coarse.eta: must be >= 2"):
        load_spec(path)
    path.write_text(path.read_text().replace("eta = 1\n", "").replace('"trials"', '"time"'))
    with pytest.raises(SpecError, match=r"coarse.budget: must be 'epochs' .* or 'trials'"):
        load_spec(path)


# -- an epoch budget: trials are drawn until trials x epochs epochs are spent ---------------
def test_epoch_budget_draws_half_of_what_the_expected_spending_leaves_room_for() -> None:
    """100 epochs of 10-epoch trials: room for 10 before any has ended; once trials end after
    2.5 epochs on average, the rest of the budget has room for more: half of it is drawn."""
    budget = EpochBudget(100, 10)
    assert (budget.room(), budget.trials_left()) == (10, 5)
    budget.drawn(10)
    assert budget.room() == budget.trials_left() == 0  # 10 running may spend 10 epochs each
    for trial_id, epochs in enumerate([1, 1, 3, 1, 1, 3, 1, 9]):
        budget.ran(trial_id, epochs)
        budget.end(trial_id, epochs)
    # 8 ended with 20 epochs (mean 2.5); 2 drawn, not started: expected 2 x 2.5 = 5
    assert budget.spent == 20
    assert budget.room() == (100 - 20 - 5) // 2.5 == 30 and budget.trials_left() == 15
    budget.ran(8, 4)  # a trial that has run more than the mean is expected to spend what it ran
    assert budget.room() == int((100 - 20 - 4 - 2.5) // 2.5) == 29
    assert budget.trials_left() == 15  # half, rounded up
    budget.drawn(29)
    assert budget.trials_left() == 0
    failed = EpochBudget(3, 10, pending=1)
    failed.end(0, 0)  # a trial that failed before its first epoch is charged one
    assert (failed.spent, failed.room(), failed.trials_left()) == (1, 2, 1)


def test_draws_wait_while_running_trials_may_still_spend_the_budget() -> None:
    """12 epochs of 3-epoch trials: half the room at a time, then nothing more while the 4
    drawn run (an empty range: ask again); once two ended after one epoch each, room for
    more; once none is running and no room is left, the stage has spent its budget."""
    budget = EpochBudget(12, 3)
    chunks = draws(0, 0, 1000, budget)
    assert [next(chunks) for _ in range(4)] == [(0, 2), (2, 3), (3, 4), (4, 4)]
    budget.end(0, 1)
    budget.end(1, 1)  # mean 1: the 2 still running are expected to spend 1 each
    assert budget.room() == 12 - 2 - 2 and next(chunks) == (4, 8)
    running = list(range(2, 8))
    for start, stop in chunks:  # from now on every trial ends after one epoch
        for trial_id in [*running, *range(start, stop)]:
            budget.end(trial_id, 1)
        running = []
    assert budget.spent == 12 and budget.pending == 0
    assert list(draws(5, 2, 2)) == [(2, 4), (4, 5)]  # no budget: up to the stage's trials


def test_a_stage_with_an_epoch_budget_spends_it_on_more_trials(tmp_path: Path) -> None:
    spec = load_spec(make_spec(tmp_path, trials=12, budget="epochs"))
    store = Store(str(tmp_path / "a.db"))
    _, stage, _ = start_or_resume(store, spec, StageRequest(StageKind.COARSE, 12, 9))
    assert stage.epoch_budget == 12 * 9
    executor = InProcessExecutor(Workload(spec.trainable, spec.metric, tmp_path))
    counts = run_stage(store, spec, stage, executor)
    finished = finish_stage(store, spec, stage)
    db = str(tmp_path / "a.db")
    ((trials, rows),) = db_rows(
        db,
        "SELECT count(DISTINCT t.trial_id), count(*) FROM trials t JOIN metrics m "
        "ON m.trial_id = t.trial_id AND m.name = 'val_acc'",
    )
    assert counts.get(Status.PENDING, 0) == 0 and counts[Status.STOPPED] > 0
    assert trials == sum(counts.values()) == finished.stage.n_trials > 12  # stops bought trials
    assert db_rows(db, "SELECT n_trials, epoch_budget FROM stages") == [(trials, 108)]
    # it stopped drawing when less than one average trial's epochs were left
    assert rows > 108 - rows / trials
    store.close()


def test_an_interrupted_budget_stage_saves_its_spending_and_resumes_to_the_budget(
    tmp_path: Path,
) -> None:
    spec = load_spec(make_spec(tmp_path, trials=12, budget="epochs"))
    store = Store(str(tmp_path / "a.db"))
    _, stage, _ = start_or_resume(store, spec, StageRequest(StageKind.COARSE, 12, 9))
    executor = InProcessExecutor(Workload(spec.trainable, spec.metric, tmp_path))

    class Interrupted(InProcessExecutor):  # Ctrl-C after 30 trials' events
        def run(self, tasks, board=None):  # type: ignore[no-untyped-def]
            for n, events in enumerate(super().run(tasks, board)):
                if n == 30:
                    raise KeyboardInterrupt
                yield events

    with pytest.raises(KeyboardInterrupt):
        run_stage(store, spec, stage, Interrupted(executor.workload))
    found = saved(store, "asha", "coarse")
    assert found is not None and found.budget is not None
    ended, spent = store.epochs_spent(stage.stage_id)
    assert (found.budget.total, found.budget.spent, found.budget.ended) == (108, spent, ended)
    assert 0 < spent < 108
    _, again, resumed = start_or_resume(store, spec, StageRequest(StageKind.COARSE, 12, 9))
    assert resumed and again.stage_id == stage.stage_id
    run_stage(store, spec, again, executor, resumed=True)
    assert store.epochs_spent(stage.stage_id)[1] > 108 - 9  # resumed until spent, not anew
    assert store.status_counts(stage.stage_id).get(Status.PENDING, 0) == 0
    store.close()


# -- the CLI on a real local Ray: --schedule asha, kill -9, resume ----------------------------
def _start(spec: Path, db: Path, address: str) -> subprocess.Popen[str]:
    argv = ["coarse", str(spec), "--db", str(db), "--address", address, "--schedule", "asha"]
    return subprocess.Popen(
        [sys.executable, "-m", "hpsearch", *argv, "--quiet"],
        cwd=spec.parent,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stopped_count(db: Path) -> int:
    try:
        return int(query(db, "SELECT count(*) FROM trials WHERE status = 'stopped'")[0][0])
    except (sqlite3.OperationalError, FileNotFoundError):
        return 0


def test_cli_asha_stage_killed_then_resumed_keeps_every_decision(
    tmp_path: Path, ray_address: str
) -> None:
    spec = make_spec(tmp_path, trials=12, budget="epochs")  # 108 epochs
    spec.write_text(spec.read_text().replace('schedule = "asha"\n', ""))  # from --schedule
    db = tmp_path / "h.db"
    (tmp_path / "slow").write_text("0.2")
    proc = _start(spec, db, ray_address)
    deadline = time.monotonic() + 120
    while _stopped_count(db) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the stage ended before it could be killed mid-run"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _stopped_count(db) >= 2, proc.communicate()
    stopped = set(
        query(db, "SELECT trial_id, epochs_run, error FROM trials WHERE status = 'stopped'")
    )
    rows_before = set(query(db, "SELECT * FROM metrics"))
    (tmp_path / "slow").unlink()
    went_on = query(  # trials with a row past a rung: that rung let them go on
        db,
        "SELECT DISTINCT m.trial_id, r.rung FROM metrics m JOIN (SELECT 1 AS rung UNION ALL "
        "SELECT 3) r ON m.epoch > r.rung",
    )

    result = run_cli(
        "coarse",
        str(spec),
        "--db",
        str(db),
        "--address",
        ray_address,
        "--schedule",
        "asha",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "resuming coarse stage 1" in result.stderr
    assert "stopped" in result.stdout.splitlines()[0]  # the summary line counts them
    assert stopped <= set(query(db, "SELECT trial_id, epochs_run, error FROM trials"))
    assert rows_before <= set(query(db, "SELECT * FROM metrics"))
    for trial_id, rung in went_on:
        ((status, epochs_run),) = query(
            db, f"SELECT status, epochs_run FROM trials WHERE trial_id = {trial_id}"
        )
        assert status in ("completed", "stopped") and (status == "completed" or epochs_run > rung)
    # a stopped trial spent no epoch past its rung, in any attempt
    assert query(
        db,
        "SELECT count(*) FROM metrics m JOIN trials t USING (trial_id) "
        "WHERE t.status = 'stopped' AND m.epoch > t.epochs_run",
    ) == [(0,)]
    assert query(db, "SELECT DISTINCT status FROM trial_results ORDER BY 1") == [
        ("completed",),
        ("stopped",),
    ]
    show = run_cli("show", str(spec), "--db", str(db), cwd=tmp_path)
    assert re.search(r"trials: \d+ completed, \d+ stopped", show.stdout), show.stdout
    # the resumed run went on drawing trials until the stage's 108 epochs were spent
    ((n_trials, inserted, pending),) = query(
        db,
        "SELECT n_trials, (SELECT count(*) FROM trials), (SELECT count(*) FROM trials "
        "WHERE status NOT IN ('completed', 'stopped', 'failed', 'diverged')) FROM stages",
    )
    assert n_trials == inserted > 12 and pending == 0
    assert query(db, "SELECT count(*) FROM metrics WHERE name = 'val_acc'")[0][0] > 108 - 9
