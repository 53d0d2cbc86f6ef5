"""A trial whose worker process dies is retried as a new attempt; the lost attempt's rows stay.

The trainable kills its own worker process (`os._exit`, as the OOM killer would) on the real
local Ray; the multi-node cluster tests kill a whole node.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import query, run_cli

TRAINABLE = """
import os
import time
from pathlib import Path

def train(params, *, epochs, seed):
    marker = Path(params["markers"]) / str(seed)
    dies = params["kind"] == "always" or not marker.exists()
    marker.touch()
    for epoch in range(1, epochs + 1):
        time.sleep(0.1)
        if dies and epoch == 2:
            time.sleep(0.5)  # epoch 1 reaches the driver first
            os._exit(1)
        yield {"val_acc": params["x"] * epoch}
"""

SPEC = """
name = "lost-{kind}"
trainable = "dying:train"
metric = "val_acc"

[fixed]
kind = "{kind}"
markers = "{markers}"

[space]
x = {{ type = "uniform", low = 0.0, high = 1.0 }}

[coarse]
trials = {trials}
epochs = 3
"""


def study(tmp_path: Path, kind: str, trials: int) -> Path:
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "dying.py").write_text(TRAINABLE)
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC.format(kind=kind, trials=trials, markers=markers))
    return spec


def assert_every_attempt_recorded(db: Path) -> list[tuple]:
    """Each trial has attempts 1..trials.attempts: the earlier ones lost with their node and the
    worker's reason, the last one ended as the trial did (its node too: none when the worker
    died before the trial's start reached the driver)."""
    rows = query(db, "SELECT * FROM attempts ORDER BY trial_id, attempt")
    trials = query(db, "SELECT trial_id, attempts, status, error, node_id FROM trials")
    for trial_id, n, status, error, node in trials:
        mine = [r for r in rows if r[0] == trial_id]
        assert [r[1] for r in mine] == list(range(1, n + 1)), mine
        assert all(r[4] for r in mine), mine  # finished_at
        *lost, last = mine
        assert (last[2], last[5], last[6]) == (node, status, error)
        for _, _, lost_node, started, _, outcome, reason in lost:
            assert lost_node and started and outcome == "lost", mine
            assert reason.startswith("worker lost: "), mine
    return rows


def test_trial_whose_worker_died_is_retried_as_a_new_attempt(
    tmp_path: Path, ray_address: str
) -> None:
    spec, db = study(tmp_path, "once", trials=3), tmp_path / "h.db"
    result = run_cli(
        "coarse", str(spec), "--db", str(db), "--address", ray_address, "-q", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    trials = query(db, "SELECT trial_id, status, attempts FROM trials")
    assert [(status, attempts >= 2) for _, status, attempts in trials] == [("completed", True)] * 3
    for trial_id, _, attempts in trials:
        epochs = dict(
            query(
                db,
                f"SELECT attempt, max(epoch) FROM metrics WHERE trial_id = {trial_id} GROUP BY 1",
            )
        )
        assert epochs[attempts] == 3  # the last attempt ran from epoch 1 to the end
        assert 1 in [e for a, e in epochs.items() if a < attempts]  # the lost attempt's rows stay
    rows = assert_every_attempt_recorded(db)
    assert sum(r[5] == "lost" for r in rows) >= 3  # each trial lost its first attempt
    assert all(r[2] and r[3] for r in rows)  # each attempt's node and start (died in epoch 2)


def test_trial_out_of_retries_fails_with_the_reason(tmp_path: Path, ray_address: str) -> None:
    spec, db = study(tmp_path, "always", trials=2), tmp_path / "h.db"
    result = run_cli(
        "coarse", str(spec), "--db", str(db), "--address", ray_address, "--max-retries", "1",
        "-q", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # nothing completed
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()  # -q: hpsearch's lines only, no `(raylet)` text from Ray
    assert lines[0].startswith("coarse stage 1: 2 trials (2 failed)"), result.stdout
    assert all(line.startswith(("Ray's messages (", "next: ")) for line in lines[1:]), lines
    assert "(raylet)" not in result.stdout + result.stderr
    rows = query(db, "SELECT status, attempts, error FROM trials")
    assert [(status, attempts) for status, attempts, _ in rows] == [("failed", 2)] * 2
    for _, _, error in rows:
        assert "worker lost" in error and "gave up after 1 retries" in error
    assert query(db, "SELECT DISTINCT attempt FROM metrics ORDER BY 1") == [(1,), (2,)]
    history = assert_every_attempt_recorded(db)
    assert [(r[1], r[5]) for r in history] == [(1, "lost"), (2, "failed")] * 2


CRASHER = """
import os

def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        if params["x"] > 0.85:
            os._exit(1)  # this configuration always kills its worker (as an OOM would)
        yield {"val_acc": params["x"] * epoch}
"""


def test_a_crashing_trial_does_not_use_up_the_retries_of_trials_queued_with_it(
    tmp_path: Path, ray_address: str
) -> None:
    """Short trials share a Ray task; only the trial that was running when it died is charged."""
    (tmp_path / "crasher.py").write_text(CRASHER)
    spec = tmp_path / "study.toml"
    spec.write_text(
        SPEC.replace('"dying:train"', '"crasher:train"')
        .replace('kind = "{kind}"\nmarkers = "{markers}"\n', "")
        .format(kind="crash", trials=60)
    )
    db = tmp_path / "h.db"
    result = run_cli(
        "coarse", str(spec), "--db", str(db), "--address", ray_address, "--max-retries", "0",
        "-q", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = query(
        db,
        "SELECT p.value > 0.85, t.status, count(*), min(t.attempts) FROM trials t "
        "JOIN params p USING (trial_id) GROUP BY 1, 2",
    )
    counts = {(bool(crashes), status): n for crashes, status, n, _ in rows}
    assert all(attempts >= 1 for *_, attempts in rows), rows  # a lost attempt counts too
    assert counts.get((True, "failed"), 0) >= 1, rows  # the seed draws some crashers
    assert set(counts) == {(True, "failed"), (False, "completed")}, rows
    assert_every_attempt_recorded(db)
