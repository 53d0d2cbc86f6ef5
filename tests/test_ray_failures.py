"""When Ray itself fails, the trials are not to blame (issue 11, cases 7 and 13).

A local raylet killed mid-stage stops the stage with one line and exit 1; no trial is failed
or charged a retry, and the rerun completes every trial. A private Ray's session directory is
kept only with --keep-logs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import descendants, query, run_cli

TRAINABLE = """
import time

def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        time.sleep(0.3)
        yield {"val_acc": params["x"] * epoch}
"""

SPEC = """
name = "raylet"
trainable = "slow:train"
metric = "val_acc"

[space]
x = { type = "uniform", low = 0.0, high = 1.0 }

[coarse]
trials = 8
epochs = 3
"""


def metric_rows(db: Path) -> int:
    try:
        return query(db, "SELECT count(*) FROM metrics")[0][0]
    except (FileNotFoundError, sqlite3.OperationalError):  # not created yet
        return 0


def raylet_pid(ray_tmp: Path) -> int:
    """The raylet's pid, as its own log in the Ray session names it (`[time I PID TID]`)."""
    (session,) = [p for p in ray_tmp.glob("session_2*") if p.is_dir()]
    first = (session / "logs" / "raylet.out").read_text().splitlines()[0]
    match = re.match(r"\[[^\]]* [A-Z] (\d+) \d+\]", first)
    assert match, first
    return int(match.group(1))


def test_a_killed_raylet_stops_the_stage_and_the_rerun_completes_every_trial(
    tmp_path: Path, ray_address: str
) -> None:
    (tmp_path / "slow.py").write_text(TRAINABLE)
    spec, db = tmp_path / "study.toml", tmp_path / "h.db"
    spec.write_text(SPEC)
    temp = Path(tempfile.mkdtemp(prefix="hp-", dir="/tmp"))  # Ray's socket paths stay short
    command = [sys.executable, "-m", "hpsearch", "coarse", str(spec), "--db", str(db), "-q"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TMPDIR": str(temp)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [*command, "--cpus", "2", "--keep-logs"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while metric_rows(db) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    os.kill(raylet_pid(temp / "ray"), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 1, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("hpsearch: Ray failed mid-stage (") and "rerun the command" in line
    assert "Traceback" not in stderr and "(raylet)" not in stdout + stderr
    assert stdout == ""
    assert query(db, "SELECT count(*) FROM trials WHERE status IN ('failed', 'diverged')") == [(0,)]
    assert query(db, "SELECT count(*) FROM attempts WHERE outcome = 'failed'") == [(0,)]
    assert [p.name for p in (temp / "ray").glob("session_2*")], "--keep-logs kept nothing"

    shutil.rmtree(temp)
    done = run_cli(*command[3:], "--address", ray_address, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "resuming coarse stage 1" in done.stderr
    assert query(db, "SELECT status, count(*) FROM trials GROUP BY 1") == [("completed", 8)]


def test_a_killed_driver_leaves_no_ray_process_and_no_session_directory(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(TRAINABLE)
    spec, db = tmp_path / "study.toml", tmp_path / "h.db"
    spec.write_text(SPEC)
    temp = Path(tempfile.mkdtemp(prefix="hp-", dir="/tmp"))  # Ray's socket paths stay short
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TMPDIR": str(temp)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "coarse", str(spec), "--db", str(db), "--cpus", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while metric_rows(db) < 3:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        ray_processes = descendants(proc.pid) - {proc.pid}
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 60
        while (alive(ray_processes) or list(temp.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert alive(ray_processes) == set()  # Ray's agents included
        assert list(temp.iterdir()) == []
    finally:
        shutil.rmtree(temp)


def alive(pids: set[int]) -> set[int]:
    """Those of the processes that still run (not zombies)."""
    running = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                running.add(pid)
        except OSError:
            pass
    return running
