"""The warm local Ray: left by the first local command, reused by the next, stopped on demand,
after an idle timeout or replaced after a crash; isolated like a private Ray.

Real CLI subprocesses and a real Ray, each test with its own HPSEARCH_HOME and a finalizer that
stops the warm Ray it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import descendants, listening, query, run_cli

# Module-level state a later command must never see: trials seen by this module in this
# process. Each command runs one trial, so every trial must report 0 (a fresh worker).
TRAINABLE = """
import os
from pathlib import Path

SEEN = []

def train(params, *, epochs, seed):
    SEEN.append(params["x"])
    for epoch in range(1, epochs + 1):
        yield {
            "val_acc": params["x"],
            "seen_before": float(len(SEEN) - 1),
            "pid": float(os.getpid()),
            "env_value": float(os.environ.get("HPSEARCH_TEST_VALUE", "-1")),
            "cwd_value": float(Path("value.txt").read_text()),
        }
"""

SPEC = """
name = "warm"
trainable = "warmtrain:train"
metric = "val_acc"

[space]
x = { type = "uniform", low = 0.0, high = 1.0 }

[coarse]
trials = 1
epochs = 1
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of commands sharing one warm Ray; it is stopped at the end."""
    env = {"HPSEARCH_HOME": str(tmp_path / "home"), "HPSEARCH_REUSE_RAY": "1"}
    (tmp_path / "warmtrain.py").write_text(TRAINABLE)
    (tmp_path / "study.toml").write_text(SPEC)
    try:
        yield env
    finally:
        run_cli("ray", "stop", cwd=tmp_path, env=env)


def coarse(
    tmp_path: Path, env: dict[str, str], value: int, *flags: str
) -> subprocess.CompletedProcess[str]:
    """One one-trial stage, run from a directory of its own holding value.txt = `value`."""
    cwd = tmp_path / f"run{value}"
    cwd.mkdir(exist_ok=True)
    (cwd / "value.txt").write_text(str(value))
    spec, db = tmp_path / "study.toml", tmp_path / "h.db"
    run_env = {**env, "HPSEARCH_TEST_VALUE": str(value)}
    result = run_cli("coarse", str(spec), "--db", str(db), "-q", *flags, cwd=cwd, env=run_env)
    assert result.returncode == 0, result.stderr
    return result


def status(tmp_path: Path, env: dict[str, str]) -> dict:
    result = run_cli("ray", "status", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def last_trial(db: Path) -> dict[str, float]:
    rows = query(
        db,
        "SELECT name, value FROM metrics WHERE trial_id = (SELECT max(trial_id) FROM trials)",
    )
    return dict(rows)


def running(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def wait_until_gone(pids: set[int], seconds: float = 60) -> set[int]:
    deadline = time.monotonic() + seconds
    while running(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return running(pids)


def test_the_second_command_joins_the_warm_ray_of_the_first_and_sees_nothing_of_it(
    tmp_path: Path, home: dict[str, str]
) -> None:
    db = tmp_path / "h.db"
    coarse(tmp_path, home, 1)
    first = status(tmp_path, home)
    assert first["running"] and first["cpus"] == os.cpu_count()
    assert first["address"].startswith("127.0.0.1:")
    trial1 = last_trial(db)

    coarse(tmp_path, home, 2)
    second = status(tmp_path, home)
    assert (second["pid"], second["address"], second["started"]) == (
        first["pid"],
        first["address"],
        first["started"],
    )
    trial2 = last_trial(db)
    # a fresh worker: no module state of the first command, and this command's env and cwd
    assert trial1["seen_before"] == trial2["seen_before"] == 0.0
    assert trial2["pid"] != trial1["pid"]
    assert (trial1["env_value"], trial1["cwd_value"]) == (1.0, 1.0)
    assert (trial2["env_value"], trial2["cwd_value"]) == (2.0, 2.0)

    ray_pids = descendants(first["pid"])
    addresses = listening(ray_pids)
    assert len(addresses) >= 3  # gcs_server, raylet, the owner's core worker
    assert {a.rsplit(":", 1)[0] for a in addresses} <= {"127.0.0.1", "[::ffff:127.0.0.1]"}

    stopped = run_cli("ray", "stop", cwd=tmp_path, env=home)
    assert stopped.returncode == 0 and f"owner pid {first['pid']}" in stopped.stdout
    assert not wait_until_gone(ray_pids)
    assert status(tmp_path, home) == {"running": False, "home": home["HPSEARCH_HOME"]}


def test_a_killed_warm_ray_is_replaced_by_the_next_command(
    tmp_path: Path, home: dict[str, str]
) -> None:
    coarse(tmp_path, home, 1)
    first = status(tmp_path, home)
    ray_pids = descendants(first["pid"])
    os.kill(first["pid"], signal.SIGKILL)
    coarse(tmp_path, home, 2)  # at once: the next command does not wait for the old Ray
    second = status(tmp_path, home)
    assert second["running"] and second["pid"] != first["pid"]
    assert last_trial(tmp_path / "h.db")["cwd_value"] == 2.0
    # Ray's processes share the owner's fate: gcs_server and raylet at once, the raylet's
    # agents and workers when they notice it is gone (up to a minute on a loaded machine)
    assert not wait_until_gone(ray_pids, seconds=240)


def test_the_warm_ray_stops_itself_after_the_idle_timeout(
    tmp_path: Path, home: dict[str, str]
) -> None:
    env = {**home, "HPSEARCH_RAY_IDLE_SECONDS": "3"}
    coarse(tmp_path, env, 1)
    first = status(tmp_path, env)
    assert first["idle_timeout_seconds"] == 3.0
    ray_pids = descendants(first["pid"])
    assert not wait_until_gone(ray_pids, seconds=120)
    assert not status(tmp_path, env)["running"]


def test_opting_out_or_other_cpus_runs_a_private_ray_that_ends_with_the_command(
    tmp_path: Path, home: dict[str, str]
) -> None:
    coarse(tmp_path, {**home, "HPSEARCH_REUSE_RAY": "0"}, 1)
    assert not status(tmp_path, home)["running"]
    coarse(tmp_path, {**home, "RAY_ADDRESS": "local"}, 2)
    assert not status(tmp_path, home)["running"]

    coarse(tmp_path, home, 3, "--cpus", "1")  # starts the warm Ray with 1 CPU
    warm = status(tmp_path, home)
    assert warm["cpus"] == 1
    coarse(tmp_path, home, 4, "--cpus", "2")  # another CPU count: a private Ray
    assert status(tmp_path, home)["pid"] == warm["pid"]
    assert query(tmp_path / "h.db", "SELECT count(*) FROM trials WHERE status = 'completed'") == [
        (4,)
    ]


def test_a_bad_idle_timeout_is_one_line_and_starts_nothing(
    tmp_path: Path, home: dict[str, str]
) -> None:
    env = {**home, "HPSEARCH_RAY_IDLE_SECONDS": "soon"}
    spec, db = tmp_path / "study.toml", tmp_path / "h.db"
    result = run_cli("coarse", str(spec), "--db", str(db), "-q", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "hpsearch: error: HPSEARCH_RAY_IDLE_SECONDS='soon': expected a number of seconds"
    )
    assert not status(tmp_path, home)["running"]
