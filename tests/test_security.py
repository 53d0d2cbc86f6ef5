"""The local Ray that hpsearch starts listens on 127.0.0.1 only (anyone reaching Ray runs code)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import descendants, listening

TRAINABLE = """
import time

def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        time.sleep(0.5)
        yield {"val_acc": params["x"] * epoch}
"""

SPEC = """
name = "bind"
trainable = "slow:train"
metric = "val_acc"

[space]
x = { type = "uniform", low = 0.0, high = 1.0 }

[coarse]
trials = 2
epochs = 3
"""


def test_local_ray_listens_on_loopback_only(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(TRAINABLE)
    (tmp_path / "study.toml").write_text(SPEC)
    db = tmp_path / "h.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    args = ["coarse", "study.toml", "--db", str(db), "--cpus", "1", "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        addresses: list[str] = []
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists() and _running(db):
                addresses = listening(descendants(proc.pid))
                break
            time.sleep(0.2)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert len(addresses) >= 3  # gcs_server, raylet, the driver's core worker
    hosts = {address.rsplit(":", 1)[0] for address in addresses}
    assert hosts <= {"127.0.0.1", "[::ffff:127.0.0.1]"}, addresses


def _running(db: Path) -> bool:
    try:
        with sqlite3.connect(db) as conn:
            return bool(
                conn.execute("SELECT count(*) FROM trials WHERE status = 'running'").fetchone()[0]
            )
    except sqlite3.OperationalError:
        return False
