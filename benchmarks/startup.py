"""Start-up of the real CLI: time to the first trial and to the end of a one-trial stage.

A one-trial, one-epoch `noop` stage run by `python -m hpsearch coarse` in a subprocess, each run
into a fresh SQLite file:
    cold   HPSEARCH_REUSE_RAY=0: a private local Ray starts and ends with the command
    first  reuse on, no warm Ray yet: the command starts the warm Ray (and leaves it)
    warm   reuse on, the warm Ray runs: the command joins it
plus `hpsearch --help` and `hpsearch sql "SELECT count(*) FROM trials"` on a one-trial database.
"First trial" is the trial's `started_at` (the driver's clock when the worker reported the
start) minus the moment the command was launched. Medians of --runs runs; everything runs under
a temporary HPSEARCH_HOME whose warm Ray is stopped at the end.

    python benchmarks/startup.py [--runs 5] [--cpus 2] [--only cold,first,warm,help,sql]

With `--only cold,help,sql` it also measures a checkout without the warm Ray (PYTHONPATH=it).
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = """
name = "startup"
trainable = "noop"
metric = "val_acc"

[space]
x = { type = "uniform", low = 0.0, high = 1.0 }

[coarse]
trials = 1
epochs = 1
"""


def run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(launch time as a UTC timestamp, wall seconds) of `python -m hpsearch ARGS`."""
    launched = time.time()
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "hpsearch", *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"hpsearch {' '.join(args)} failed:\n{result.stderr}")
    return launched, wall


def median_wall(args: list[str], env: dict[str, str], cwd: Path, runs: int) -> float:
    return statistics.median(run(args, env, cwd)[1] for _ in range(runs))


def versions() -> str:
    import ray

    return f"Python {platform.python_version()}, Ray {ray.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default=",".join(KINDS), help="comma-separated: %(default)s")
    options = parser.parse_args()
    kinds = [k for k in KINDS if k in options.only.split(",")]
    with tempfile.TemporaryDirectory(prefix="hpsearch-startup-") as tmp:
        workdir = Path(tmp)
        (workdir / "spec.toml").write_text(SPEC)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSEARCH_"))}
        path = os.pathsep.join(p for p in (base.get("PYTHONPATH", ""), str(ROOT)) if p)
        base |= {"PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}
        base |= {"HPSEARCH_REUSE_RAY": "0"}  # a checkout without the warm Ray ignores it
        base |= {"HPSEARCH_HOME": str(workdir / "home")}
        cpus = ["--cpus", str(options.cpus)]
        load_before = os.getloadavg()[0]
        try:
            figures = measure(workdir, base, options.runs, cpus, kinds)
        finally:
            if {"first", "warm"} & set(kinds):
                run(["ray", "stop"], base, workdir)
        report(figures, options, load_before)


KINDS = ("cold", "first", "warm", "help", "sql")


def measure(
    workdir: Path, base: dict[str, str], runs: int, cpus: list[str], kinds: list[str]
) -> dict[str, tuple[float, ...]]:
    figures: dict[str, tuple[float, ...]] = {}
    cold = base | {"HPSEARCH_REUSE_RAY": "0"}
    warm = base | {"HPSEARCH_REUSE_RAY": "1"}
    if "help" in kinds:
        figures["help"] = (median_wall(["--help"], base, workdir, runs),)
    if "sql" in kinds:
        db = workdir / "sql.db"
        run(["coarse", "spec.toml", "--db", str(db), "-q", *cpus], cold, workdir)
        sql = ["sql", "SELECT count(*) FROM trials", "--db", str(db)]
        figures["sql"] = (median_wall(sql, base, workdir, runs),)
    if "cold" in kinds:
        figures["cold"] = _medians([stage_with(workdir, cold, "cold", cpus) for _ in range(runs)])
    if "first" in kinds:
        first_runs = []
        for _ in range(runs):
            first_runs.append(stage_with(workdir, warm, "first", cpus))
            run(["ray", "stop"], base, workdir)
        figures["first"] = _medians(first_runs)
    if "warm" in kinds:
        stage_with(workdir, warm, "warmup", cpus)  # leaves the warm Ray
        warm_runs = []
        for _ in range(runs):
            time.sleep(5)  # after each command the warm Ray prestarts the next one's workers
            warm_runs.append(stage_with(workdir, warm, "warm", cpus))
        figures["warm"] = _medians(warm_runs)
    return figures


def stage_with(
    workdir: Path, env: dict[str, str], name: str, cpus: list[str]
) -> tuple[float, float]:
    db = workdir / f"{name}-{time.monotonic_ns()}.db"
    launched, wall = run(["coarse", "spec.toml", "--db", str(db), "-q", *cpus], env, workdir)
    with sqlite3.connect(db) as conn:
        (started,) = conn.execute("SELECT min(started_at) FROM trials").fetchone()
    first = datetime.fromisoformat(started).replace(tzinfo=UTC).timestamp() - launched
    return first, wall


def _medians(results: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def report(figures: dict[str, tuple[float, ...]], options: argparse.Namespace, load: float) -> None:
    cpu = platform.processor() or platform.machine()
    print(f"# {platform.system()} {cpu}, {os.cpu_count()} CPUs, {versions()}")
    print(f"# load average (1 min) {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"# median of {options.runs} runs, --cpus {options.cpus}")
    print("| what | first trial (s) | total (s) |")
    print("|---|---:|---:|")
    names = {
        "cold": "stage, private Ray (`HPSEARCH_REUSE_RAY=0`)",
        "first": "stage, starting the warm Ray",
        "warm": "stage, warm Ray running",
    }
    names["help"] = "`hpsearch --help`"
    names["sql"] = '`hpsearch sql "SELECT count(*) FROM trials"` (1 trial)'
    for key, label in names.items():
        if key in figures:
            cells = [f"{x:.2f}" for x in figures[key]]
            print(f"| {label} | {' | '.join(([''] + cells)[-2:])} |")


if __name__ == "__main__":
    main()
