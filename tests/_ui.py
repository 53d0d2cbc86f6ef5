"""Helpers of the dashboard tests: a coarse → widen → fine study, the server as a real
subprocess, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from hpsearch.driver import finish_stage, run_stage, start_or_resume
from hpsearch.planner import StageRequest
from hpsearch.registry import qualified
from hpsearch.runtime.executor import InProcessExecutor, Workload
from hpsearch.spec import StudySpec, load_spec
from storage import StageKind, Store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SPEC = """
name = "{name}"
trainable = "synthetic"
metric = "val_acc"
mode = "max"
seed = 3

[fixed]
sleep = {sleep}
noise = 0.01

[space]
lr      = {{ type = "loguniform", low = 1e-5, high = 10.0 }}
reg     = {{ type = "loguniform", low = 1e-5, high = 1.0 }}
dropout = {{ type = "uniform", low = 0.0, high = 0.6 }}
update  = {{ type = "choice", values = ["sgd", "adam", "nesterov"] }}

[coarse]
trials = {trials}
epochs = 3

[fine]
trials = 10
epochs = 5
top = 5
"""


def write_spec(directory: Path, name: str, trials: int, sleep: float = 0.0) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(SPEC.format(name=name, trials=trials, sleep=sleep))
    return path


def build_search(directory: Path, db: Path) -> None:
    """Study `digits-mlp` in `db`: coarse (40 x 3), widen (coarse on its proposal), fine (10 x 5),
    each finished with its flags and proposal, run in-process (no Ray)."""
    spec = load_spec(write_spec(directory, "digits-mlp", 40))
    store = Store(str(db))
    executor = InProcessExecutor(Workload(qualified(spec.trainable), spec.metric, directory))
    try:
        _run(store, spec, executor, StageRequest(StageKind.COARSE, 40, 3))
        _run(store, spec, executor, StageRequest(StageKind.COARSE, 20, 3, widen=True))
        _run(store, spec, executor, StageRequest(StageKind.FINE, 10, 5))
    finally:
        executor.close()
        store.close()


def _run(store: Store, spec: StudySpec, executor: InProcessExecutor, request: StageRequest) -> None:
    _, stage, _ = start_or_resume(store, spec, request)
    run_stage(store, spec, stage, executor)
    finish_stage(store, spec, stage)


class UiServer:
    """`hpsearch ui` in a subprocess; `url` is the line it prints (with ?token= if any)."""

    def __init__(self, db: Path, *args: str, cwd: Path) -> None:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hpsearch", "ui", "--db", str(db), "--port", "0", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.line = self._first_line(timeout=60)
        self.url = self.line.rsplit(" at ", 1)[1]
        self.base = self.url.split("?", 1)[0].rstrip("/")

    def _first_line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.process.kill()
            raise AssertionError("hpsearch ui printed no URL")
        line = self.process.stdout.readline().strip()
        if not line:
            _, err = self.process.communicate(timeout=10)
            raise AssertionError(f"hpsearch ui ended: {err}")
        return line

    def stop(self) -> int:
        """Ctrl-C (SIGINT) as a user would; the exit code."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -1


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
