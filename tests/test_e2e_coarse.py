"""`hpsearch coarse` end to end: the real CLI in a subprocess on a real local Ray."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import query, run_cli

TRAINABLE = """
import time

def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        time.sleep(params.get("sleep", 0.0))
        if params["kind"] == "raise" and epoch == 2:
            raise ValueError("bad batch in epoch 2")
        loss = float("inf") if params["kind"] == "inf" and epoch == 3 else params["x"] / epoch
        yield {"val_acc": 1 / (1 + loss), "val_loss": loss, "train_loss": loss, "lr": params["x"]}
"""

SPEC = """
name = "e2e"
trainable = "e2e_train:train"
metric = "val_acc"
mode = "max"

[fixed]
sleep = {sleep}

[space]
x = {{ type = "loguniform", low = 1e-3, high = 10 }}
kind = {{ type = "choice", values = {kinds} }}

[coarse]
trials = {trials}
epochs = 4
"""


def study(tmp_path: Path, kinds: str = '["ok"]', trials: int = 40, sleep: float = 0.0) -> Path:
    (tmp_path / "e2e_train.py").write_text(TRAINABLE)
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC.format(kinds=kinds, trials=trials, sleep=sleep))
    return spec


def coarse(spec: Path, db: Path, address: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """`hpsearch coarse SPEC --db DB --address ADDRESS [flags]`, run from the spec's directory."""
    return run_cli(
        "coarse", str(spec), "--db", str(db), "--address", address, *flags, cwd=spec.parent
    )


def test_coarse_stage_lands_every_epoch_in_sql(tmp_path: Path, ray_address: str) -> None:
    spec, db = study(tmp_path), tmp_path / "results.db"
    result = coarse(spec, db, ray_address)
    assert result.returncode == 0, result.stderr
    assert "coarse stage 1: 40 trials (40 completed)" in result.stdout
    assert "Top 10 trials by val_acc" in result.stdout
    assert query(db, "SELECT count(*) FROM trials WHERE status = 'completed'") == [(40,)]
    assert query(db, "SELECT count(*) FROM metrics") == [(40 * 4 * 4,)]
    assert query(db, "SELECT count(*) FROM params") == [(40 * 2,)]
    assert query(db, "SELECT count(DISTINCT node_id) FROM trials") == [(1,)]
    best = query(db, "SELECT max(best_value) FROM trial_results WHERE study = 'e2e'")[0][0]
    recomputed = query(db, "SELECT max(value) FROM metrics WHERE name = 'val_acc'")[0][0]
    assert best == recomputed
    assert query(db, "SELECT min(epoch), max(epoch), min(attempt) FROM metrics") == [(1, 4, 1)]


def test_failed_and_diverged_trials_next_to_completed(tmp_path: Path, ray_address: str) -> None:
    spec, db = study(tmp_path, kinds='["ok", "raise", "inf"]', trials=30), tmp_path / "h.db"
    result = coarse(spec, db, ray_address)
    assert result.returncode == 0, result.stderr
    statuses = dict(
        query(
            db,
            "SELECT p.text, group_concat(DISTINCT t.status) FROM trials t "
            "JOIN params p USING (trial_id) WHERE p.name = 'kind' GROUP BY 1",
        )
    )
    assert statuses == {"ok": "completed", "raise": "failed", "inf": "diverged"}
    errors = query(
        db,
        "SELECT DISTINCT t.error FROM trials t JOIN params p USING (trial_id) "
        "WHERE p.name = 'kind' AND p.text = 'raise'",
    )
    assert len(errors) >= 1 and all("ValueError: bad batch in epoch 2" in e for (e,) in errors)
    epochs = dict(query(db, "SELECT status, max(epochs_run) FROM trials GROUP BY status"))
    assert epochs == {"completed": 4, "failed": 1, "diverged": 3}


def test_every_trial_failing_exits_1(tmp_path: Path, ray_address: str) -> None:
    spec, db = study(tmp_path, kinds='["raise"]', trials=4), tmp_path / "h.db"
    result = coarse(spec, db, ray_address)
    assert result.returncode == 1
    assert "4 failed" in result.stdout


def test_bad_spec_is_one_line_exit_2_and_database_untouched(
    tmp_path: Path, ray_address: str
) -> None:
    spec, db = study(tmp_path, trials=3), tmp_path / "h.db"
    assert coarse(spec, db, ray_address).returncode == 0
    before = db.read_bytes()
    spec.write_text(spec.read_text().replace("trials = 3", "trails = 3"))
    result = run_cli("coarse", str(spec), "--db", str(db), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "hpsearch: error: study.toml: coarse.trails: unknown key "
        "(allowed: budget, epochs, eta, grace, schedule, trial_timeout, trials)"
    )
    assert db.read_bytes() == before


def _start_driver(spec: Path, db: Path, address: str) -> subprocess.Popen[str]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpsearch",
            "coarse",
            str(spec),
            "--db",
            str(db),
            "--address",
            address,
            "--quiet",
        ],
        cwd=spec.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_rows(db: Path, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                if query(db, "SELECT count(*) FROM metrics")[0][0] >= n:
                    return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"no {n} metric rows before the driver ended: {proc.communicate()}")


def test_sigkill_mid_stage_then_rerun_resumes(tmp_path: Path, ray_address: str) -> None:
    spec, db = study(tmp_path, trials=16, sleep=0.15), tmp_path / "h.db"
    proc = _start_driver(spec, db, ray_address)
    _wait_for_rows(db, 40, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    rows_before = set(query(db, "SELECT * FROM metrics"))
    unfinished = query(db, "SELECT count(*) FROM trials WHERE status IN ('pending', 'running')")
    assert unfinished[0][0] > 0
    params_before = query(db, "SELECT * FROM params ORDER BY 1, 2")

    result = coarse(spec, db, ray_address)
    assert result.returncode == 0, result.stderr
    assert "resuming coarse stage 1" in result.stderr
    assert query(db, "SELECT count(*) FROM stages") == [(1,)]
    assert query(db, "SELECT status, count(*) FROM trials GROUP BY 1") == [("completed", 16)]
    assert query(db, "SELECT * FROM params ORDER BY 1, 2") == params_before
    assert rows_before <= set(query(db, "SELECT * FROM metrics"))
    last_attempts = query(
        db,
        "SELECT count(*) FROM trials t WHERE (SELECT count(*) FROM metrics m "
        "WHERE m.trial_id = t.trial_id AND m.attempt = t.attempts) = 16",
    )
    assert last_attempts == [(16,)]  # every trial's final attempt has 4 epochs x 4 metrics


def _assert_saved_line_is_what_the_db_holds(line: str, db: Path) -> None:
    """The interrupt's line counts the trials the database holds, after the driver exited."""
    found = re.search(r"(\d+) of 16 trials finished(?: \((.*)\))?, (\d+) of 16 config", line)
    assert found, line
    done, detail, inserted = found.groups()
    final = query(
        db,
        "SELECT status, count(*) FROM trials "
        "WHERE status IN ('completed', 'failed', 'diverged', 'stopped') GROUP BY 1 ORDER BY 1",
    )
    assert int(done) == sum(n for _, n in final)
    assert (detail or "") == ", ".join(f"{n} {status}" for status, n in final)
    assert int(inserted) == query(db, "SELECT count(*) FROM trials")[0][0] == 16


def test_ctrl_c_commits_and_exits_130(tmp_path: Path, ray_address: str) -> None:
    spec, db = study(tmp_path, trials=16, sleep=0.15), tmp_path / "h.db"
    proc = _start_driver(spec, db, ray_address)
    _wait_for_rows(db, 1, proc)  # the stage runs: its driver holds the lease
    second = coarse(spec, db, ray_address)  # a second driver on the running stage (case 6)
    assert second.returncode == 2 and proc.poll() is None, second.stderr
    assert re.fullmatch(
        rf"hpsearch: error: stage 1 \(coarse\) of study 'e2e' is being run by another driver "
        rf"\(host {re.escape(socket.gethostname())}, pid {proc.pid}, last heartbeat \d+ s ago\): "
        r"wait for it to end or stop it; a driver silent for 30 s is taken over",
        second.stderr.strip(),
    )
    _wait_for_rows(db, 40, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    _assert_saved_line_is_what_the_db_holds(stderr.strip().splitlines()[-1], db)
    received = query(db, "SELECT count(*) FROM metrics")[0][0]
    assert received >= 40
    assert query(db, "SELECT count(*) FROM stage_leases") == [(0,)]  # released on Ctrl-C
    result = coarse(spec, db, ray_address)
    assert result.returncode == 0 and "resuming coarse stage 1" in result.stderr
    assert query(db, "SELECT status, count(*) FROM trials GROUP BY 1") == [("completed", 16)]
    assert query(db, "SELECT count(*) FROM stages") == [(1,)]
    assert query(db, "SELECT count(*) FROM stage_leases") == [(0,)]  # released at the end


def test_sigterm_commits_and_exits_143_like_ctrl_c(tmp_path: Path, ray_address: str) -> None:
    """What `kill`, systemd and Kubernetes send: one line, results saved, exit 143, resumable."""
    spec, db = study(tmp_path, trials=16, sleep=0.15), tmp_path / "h.db"
    proc = _start_driver(spec, db, ray_address)
    _wait_for_rows(db, 40, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"hpsearch: terminated (SIGTERM); saved in {db}: coarse stage 1: ")
    _assert_saved_line_is_what_the_db_holds(last, db)
    assert "Traceback" not in stderr and "SIGTERM received" not in stderr + stdout
    assert query(db, "SELECT count(*) FROM metrics")[0][0] >= 40
    assert query(db, "SELECT count(*) FROM stage_leases") == [(0,)]  # released on SIGTERM
    result = coarse(spec, db, ray_address)
    assert result.returncode == 0 and "resuming coarse stage 1" in result.stderr
    assert query(db, "SELECT status, count(*) FROM trials GROUP BY 1") == [("completed", 16)]


def test_quick_start_on_a_fresh_local_ray_with_the_default_database(tmp_path: Path) -> None:
    """The README's main job: a local Ray starts on 127.0.0.1, results land in ./hpsearch.db."""
    spec = Path(__file__).resolve().parent.parent / "examples" / "digits.toml"
    temp = Path(tempfile.mkdtemp(prefix="hp-", dir="/tmp"))  # Ray's socket paths stay short
    try:
        result = run_cli(
            "coarse", str(spec), "--trials", "4", "--epochs", "2", "--cpus", "2",
            cwd=tmp_path, env={"TMPDIR": str(temp)},
        )  # fmt: skip
        left = list(temp.rglob("*"))
    finally:
        shutil.rmtree(temp)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert left == []  # the Ray session directory went with the command
    db = tmp_path / "hpsearch.db"
    assert (
        query(db, "SELECT study, status, epochs_run FROM trial_results")
        == [("digits-softmax", "completed", 2)] * 4
    )
    names = {n for (n,) in query(db, "SELECT DISTINCT name FROM metrics")}
    assert {"train_loss", "val_acc", "val_loss"} <= names
    assert "best val_acc" in result.stdout


def test_impossible_resource_requests_fail_before_the_database_changes(
    tmp_path: Path, ray_address: str
) -> None:
    spec, db = study(tmp_path, trials=3), tmp_path / "h.db"
    assert coarse(spec, db, ray_address).returncode == 0
    before = db.read_bytes()
    for flag, value, message in (
        (
            "--cpus-per-trial",
            "3",
            "--cpus-per-trial 3.0: no Ray node has that many CPUs (largest has 2)",
        ),
        ("--gpus-per-trial", "1", "--gpus-per-trial 1.0: the cluster has 0 GPUs"),
    ):
        result = coarse(spec, db, ray_address, flag, value)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"hpsearch: error: {message}"
        assert db.read_bytes() == before
