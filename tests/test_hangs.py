"""A trial that hangs costs at most its time limit (issue 11, case 4).

A hung trial is stopped where it runs (its worker killed), fails with the reason and is not
retried; the trials that finished before it keep their results, and the stage goes on.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpsearch.cli.report import stall_note
from hpsearch.cli.stages import ray_options
from hpsearch.driver import Progress
from hpsearch.errors import SpecError
from hpsearch.run_options import RunOptions
from hpsearch.runtime.worker import Ended, EpochDone, Started, TrialTask, run_bundle
from hpsearch.spec import load_spec
from hpsearch.stall import StallWatch
from storage import Status
from tests.conftest import query, run_cli

TRAINABLE = """
import time

def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        time.sleep(0.06)  # over the 50 ms a worker may hold an epoch back
        if params["x"] > 0.85 and epoch == 2:
            while True:  # a deadlocked data loader
                time.sleep(0.1)
        yield {"val_acc": params["x"] * epoch}
"""

SPEC = """
name = "hangs"
trainable = "hanging:train"
metric = "val_acc"
seed = 3

[space]
x = { type = "uniform", low = 0.0, high = 1.0 }

[coarse]
trials = 16
epochs = 3
"""


def study(tmp_path: Path) -> Path:
    (tmp_path / "hanging.py").write_text(TRAINABLE)
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC)
    return spec


def hung_trial_running(db: Path) -> bool:
    try:
        rows = query(
            db,
            "SELECT count(*) FROM trials t JOIN params p USING (trial_id) "
            "WHERE p.value > 0.85 AND t.status = 'running' AND EXISTS "
            "(SELECT 1 FROM metrics m WHERE m.trial_id = t.trial_id)",
        )
    except (FileNotFoundError, sqlite3.OperationalError):  # not created yet
        return False
    return rows[0][0] > 0


def test_a_hung_stage_resumed_with_a_time_limit_ends_and_keeps_every_result(
    tmp_path: Path, ray_address: str
) -> None:
    spec, db = study(tmp_path), tmp_path / "h.db"
    command = [sys.executable, "-m", "hpsearch", "coarse", str(spec), "--db", str(db)]
    command += ["--address", ray_address, "-q"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not hung_trial_running(db):  # without a limit: stuck for good
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr

    done = run_cli(*command[3:], "--trial-timeout", "1.5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "resuming coarse stage 1" in done.stderr and "Traceback" not in done.stderr
    trials = query(
        db,
        "SELECT p.value > 0.85, t.status, t.error, t.epochs_run, t.attempts FROM trials t "
        "JOIN params p USING (trial_id) ORDER BY t.trial_id",
    )
    hung = [t for t in trials if t[0]]
    assert hung and len(hung) < len(trials), trials  # the seed draws both kinds
    for _, status, error, epochs_run, attempts in hung:  # stopped, not retried
        assert (status, error, epochs_run) == ("failed", "timed out after 1.5 s at epoch 2", 1)
        assert attempts == 2  # the one SIGTERM ended, then the one the limit stopped
    assert {t[1:] for t in trials if not t[0]} <= {
        ("completed", None, 3, 1),
        ("completed", None, 3, 2),  # its first attempt ended with the first driver
    }, trials
    assert f"({len(trials) - len(hung)} completed, {len(hung)} failed)" in done.stdout
    outcomes = query(db, "SELECT outcome, count(*) FROM attempts GROUP BY 1 ORDER BY 1")
    assert dict(outcomes)["failed"] == len(hung)  # one failed attempt each, none lost since


def test_a_finished_trial_is_reported_before_the_next_trial_of_its_bundle_runs() -> None:
    """What a worker sends when the next trial hangs: everything of the finished one."""

    class Hang(BaseException):
        pass

    def train(params: dict, *, epochs: int, seed: int):  # type: ignore[no-untyped-def]
        if params["hang"]:
            raise Hang  # stands for a trial that never returns
        yield {"val_acc": 1.0}

    tasks = [TrialTask(i, 1, {"hang": i == 2}, i, 1) for i in (1, 2)]
    sent = []
    with pytest.raises(Hang):
        for events in run_bundle(train, tasks, "val_acc", None, flush_seconds=3600):
            sent.extend(events)
    assert [type(e) for e in sent] == [Started, EpochDone, Ended, Started]
    assert sent[2] == Ended(1, 1, Status.COMPLETED, None, sent[2].seconds)


@pytest.mark.parametrize("value", ["0", "-1", '"10"'])
def test_a_bad_trial_timeout_is_a_spec_error(value: str, tmp_path: Path) -> None:
    spec = study(tmp_path)
    spec.write_text(SPEC.replace("epochs = 3", f"epochs = 3\ntrial_timeout = {value}"))
    with pytest.raises(SpecError, match="coarse.trial_timeout: must be"):
        load_spec(spec)


def test_a_trial_without_an_epoch_for_ten_median_epochs_is_reported_stalled() -> None:
    watch = StallWatch()
    watch.alive(1, now=0.0)
    watch.alive(2, now=0.0)
    assert watch.stalled(now=60.0) is None  # no trial finished yet: no median to compare with
    watch.ended(1, seconds=6.0, epochs=3)  # 2 s per epoch
    watch.alive(3, now=50.0)
    assert watch.stalled(now=19.0) is None  # trial 2: 19 s < 10 x 2 s
    assert watch.stalled(now=61.0) == (1, 61.0)  # trial 2 only; trial 3 is 11 s in
    watch.alive(2, now=61.0)  # an epoch arrived
    assert watch.stalled(now=62.0) is None
    progress = Progress(stage=None, total=3, left=3, stalled=(2, 75.4))  # type: ignore[arg-type]
    assert "stalled: 2 trials without an epoch for 75s" in stall_note(progress)


def test_the_spec_time_limit_applies_unless_the_command_line_gives_one(tmp_path: Path) -> None:
    spec = study(tmp_path)
    spec.write_text(SPEC.replace("epochs = 3", "epochs = 3\ntrial_timeout = 30"))
    settings = load_spec(spec).coarse
    given = RunOptions(
        trials=None, epochs=None, seed=None, address=None, cpus=None, cpus_per_trial=1.0,
        gpus_per_trial=0.0, max_retries=2, trial_timeout=None, keep_logs=False, quiet=True,
        widen=False, from_stage=None, top=None, artifacts=None, schedule=None,
    )  # fmt: skip
    assert ray_options(given, settings).trial_timeout == 30
    flag = dataclasses.replace(given, trial_timeout=2.5)
    assert ray_options(flag, settings).trial_timeout == 2.5
