"""Reading while a real coarse stage on Ray is writing: sql, trials, export, plot all work."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli

TRAINABLE = """
import time

def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        time.sleep(0.1)
        acc = 1 - params["lr"] / epoch
        yield {"train_acc": acc + 0.01, "val_acc": acc, "update_ratio/W1": 1e-3 * epoch}
"""

SPEC = """
name = "live"
trainable = "slowtrain_live:train"
metric = "val_acc"

[space]
lr = { type = "loguniform", low = 1e-3, high = 1e-1 }

[coarse]
trials = 40
epochs = 8
"""


def count_rows(db: Path, cwd: Path, *, starting: bool = False) -> int:
    """Metric rows so far; while `starting`, a database still being created counts as 0."""
    done = run_cli("sql", "SELECT count(*) AS n FROM metrics", "--db", str(db), "-f", "csv",
                   cwd=cwd)  # fmt: skip
    if starting and done.returncode != 0 and "hpsearch database" in done.stderr:
        return 0
    assert done.returncode == 0, done.stderr
    return int(pd.read_csv(io.StringIO(done.stdout))["n"][0])


def test_reading_commands_work_while_a_stage_writes(tmp_path: Path, ray_address: str) -> None:
    (tmp_path / "slowtrain_live.py").write_text(TRAINABLE)
    (tmp_path / "live.toml").write_text(SPEC)
    db = tmp_path / "live.db"
    writer = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "coarse", "live.toml", "--db", str(db),
         "--address", ray_address, "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (db.exists() and count_rows(db, tmp_path, starting=True) > 0):
            assert writer.poll() is None, writer.communicate()
            assert time.monotonic() < deadline, "no metrics appeared"
            time.sleep(0.2)
        seen = count_rows(db, tmp_path)
        trials = run_cli("trials", "live.toml", "--db", str(db), "-f", "csv", cwd=tmp_path)
        export = run_cli("export", "live", "--db", str(db), "--out", "m.csv", "--metrics",
                         cwd=tmp_path)  # fmt: skip
        plot = run_cli("plot", "live", "--db", str(db), "--out", "figs", cwd=tmp_path)
        still_running = writer.poll() is None
        for done in (trials, export, plot):
            assert done.returncode == 0, done.stderr
        statuses = set(pd.read_csv(io.StringIO(trials.stdout))["status"])
        assert len(pd.read_csv(io.StringIO(trials.stdout))) == 40
        out, errors = writer.communicate(timeout=180)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, errors
    assert still_running, "the stage ended before the readers ran: make trials slower"
    assert statuses & {"pending", "running"}, statuses  # read mid-stage
    assert count_rows(db, tmp_path) == 40 * 8 * 3 > seen
    assert (tmp_path / "figs" / "val_acc_vs_lr.png").exists()
