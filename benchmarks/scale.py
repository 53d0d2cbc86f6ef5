"""One coarse stage of 1k to 1M no-op trials: driver phases, driver peak RSS, bytes per metric
row, and the reading commands on the result.

For each size N a fresh SQLite file and a child process (so its peak RSS is the driver's
alone) runs one stage of N no-op trials x 20 epochs x 4 metrics on a private local Ray with
2 CPUs, through the driver's own phases: set-up (`plan_stage` + `begin`), run (`run_stage`)
and finish (`finish_stage`); Ray's start is timed apart. Then the parent times, through the
real CLI in subprocesses (each the best of --repeats runs): `show`, `trials --top 10`,
`plot --top 10`, `export --metrics` (CSV) and two README queries with `hpsearch sql`. Every
figure carries `os.getloadavg()` as it was measured: the machine is shared.

    python benchmarks/scale.py [--sizes 1000 10000 100000] [--repeats 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EPOCHS = 20
SAMPLE_SECONDS = 10.0  # progress samples (trials done, RSS) this often
NAME = "scale"
SPEC: dict[str, Any] = {
    "name": NAME,
    "trainable": "noop",
    "metric": "val_acc",
    "mode": "max",
    "space": {
        "x": {"type": "loguniform", "low": 1e-3, "high": 10.0},
        "y": {"type": "uniform", "low": 0.0, "high": 1.0},
    },
}
# Two of the README's queries ("Best three trials of each stage", "... by decade of the
# learning rate"), on this study and its parameter x.
QUERIES = {
    "sql best 3 per stage": (
        "SELECT stage_id, stage_kind, trial, best_value, best_epoch, params FROM ("
        " SELECT r.*, row_number() OVER (PARTITION BY stage_id ORDER BY best_value DESC) AS rank"
        f" FROM trial_results r WHERE study = '{NAME}' AND status = 'completed')"
        " WHERE rank <= 3 ORDER BY stage_id, rank"
    ),
    "sql by decade of x": (
        "SELECT CAST(floor(log10(p.value)) AS INTEGER) AS x_decade, count(*) AS trials,"
        " round(avg(r.best_value), 3) AS mean_val_acc, round(max(r.best_value), 3) AS best"
        " FROM trial_results r JOIN params p ON p.trial_id = r.trial_id AND p.name = 'x'"
        f" WHERE r.study = '{NAME}' AND r.status = 'completed'"
        " GROUP BY x_decade ORDER BY x_decade"
    ),
}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def drive(trials: int, db: str, budget: float | None) -> dict[str, Any]:
    """In the child: one stage through the driver's phases; times, loads, RSS along the way and
    peak RSS. With `budget` seconds the run is stopped there (as by Ctrl-C) and what completed
    is finished and read."""
    from hpsearch.api import Study
    from hpsearch.driver import Progress, begin, finish_stage, plan_stage, run_stage
    from hpsearch.planner import StageRequest
    from hpsearch.runtime.executor import RayExecutor, RayOptions, Workload
    from storage import StageKind

    study = Study.from_spec(SPEC, db)
    store, spec = study.store, study.spec
    out: dict[str, Any] = {"trials": trials, "load_start": load()}
    t0 = time.perf_counter()
    workload = Workload("trainables.noop:train", spec.metric, Path.cwd())
    executor = RayExecutor(workload, RayOptions(address="local", cpus=2))
    t1 = time.perf_counter()
    plan = plan_stage(store, spec, StageRequest(StageKind.COARSE, trials, EPOCHS))
    _, stage, _ = begin(store, spec, plan)
    t2 = time.perf_counter()
    samples: list[tuple[float, int, float, float]] = []  # seconds, trials done, RSS MB, load1

    def sample(progress: Progress) -> None:
        elapsed = time.perf_counter() - t2
        if not samples or elapsed - samples[-1][0] >= SAMPLE_SECONDS:
            samples.append((elapsed, progress.done, rss_mb(), load()[0]))
        if budget is not None and elapsed > budget:
            raise KeyboardInterrupt

    try:
        run_stage(store, spec, stage, executor, sample)
    except KeyboardInterrupt:
        out["stopped_after_s"] = budget
    t3 = time.perf_counter()
    out["load_run"] = load()
    finish_stage(store, spec, stage)
    t4 = time.perf_counter()
    executor.close()
    counts = store.status_counts(stage.stage_id)
    study.close()
    done = counts.get("completed", 0)
    out.update(
        done=done,
        inserted=sum(counts.values()),
        ray_start_s=t1 - t0,
        setup_s=t2 - t1,
        run_s=t3 - t2,
        finish_s=t4 - t3,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        samples=samples,
        load_end=load(),
    )
    return out


def timed_cli(args: list[str], repeats: int, cwd: Path) -> dict[str, Any]:
    """The best of `repeats` runs of `python -m hpsearch ARGS`, with the load before each and
    the command's peak RSS (its own `ru_maxrss`, from wait4)."""
    best, loads, peak = float("inf"), [], 0.0
    for _ in range(repeats):
        loads.append(load()[0])
        start = time.perf_counter()
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hpsearch", *args],
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            if os.waitstatus_to_exitcode(status) != 0:
                err.seek(0)
                raise SystemExit(f"hpsearch {' '.join(args)}: {err.read().decode().strip()}")
        best, peak = min(best, seconds), max(peak, usage.ru_maxrss / 1024)
    return {"s": best, "load1": max(loads), "peak_rss_mb": peak}


def reads(db: Path, repeats: int, work: Path, export: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    common = ["--db", str(db)]
    out["show"] = timed_cli(["show", NAME, *common], repeats, work)
    out["trials --top 10"] = timed_cli(["trials", NAME, *common, "--top", "10"], repeats, work)
    plots = work / "plots"
    out["plot --top 10"] = timed_cli(
        ["plot", NAME, *common, "--top", "10", "--out", str(plots)], repeats, work
    )
    csv = work / "metrics.csv"
    if export:
        out["export --metrics"] = timed_cli(
            ["export", NAME, *common, "--metrics", "--out", str(csv)], 1, work
        )
        csv.unlink()
    for label, query in QUERIES.items():
        out[label] = timed_cli(["sql", query, *common, "--format", "csv"], repeats, work)
    return out


def bytes_per_row(db: Path) -> dict[str, Any]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return {"metric_rows": rows, "db_bytes": size, "bytes_per_metric_row": size / rows}


def one_size(
    trials: int, repeats: int, budget: float | None, skip_reads: bool, export: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hpsearch-scale-") as tmp:
        work = Path(tmp)
        db = work / "scale.db"
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HPSEARCH_REUSE_RAY": "0"}
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(trials), "--db", str(db)]
            + (["--budget", str(budget)] if budget else []),
            capture_output=True,
            text=True,
            env=env,
        )
        if child.returncode != 0:
            raise SystemExit(f"driver of {trials} trials failed:\n{child.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
        result.update(bytes_per_row(db))
        result["reads"] = {} if skip_reads else reads(db, repeats, work, export)
    return result


def row(r: dict[str, Any]) -> str:
    n = r["done"]
    per = {k: 1000 * r[f"{k}_s"] / n for k in ("setup", "run", "finish")}
    reads = " | ".join(f"{v['s']:.2f}" for v in r["reads"].values())
    return (
        f"| {n:,} | {r['setup_s'] + r['run_s'] + r['finish_s']:.1f} | {per['setup']:.3f} | "
        f"{per['run']:.3f} | {per['finish']:.3f} | {r['peak_rss_mb']:.0f} | "
        f"{r['bytes_per_metric_row']:.1f} | {reads} | {r['load_run'][0]} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--budget", type=float, help="stop each stage's run after this many seconds (for 1M)"
    )
    parser.add_argument("--skip-reads", action="store_true", help="time the driver only")
    parser.add_argument("--skip-export", action="store_true", help="no `export --metrics`")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(drive(args.child, args.db, args.budget)))
        return
    import ray
    import sqlalchemy

    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Ray {ray.__version__}, SQLAlchemy {sqlalchemy.__version__}"
    )
    results = []
    for trials in args.sizes:
        results.append(
            one_size(trials, args.repeats, args.budget, args.skip_reads, not args.skip_export)
        )
        print(json.dumps(results[-1]), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    print(
        "| trials | wall s | set-up ms/trial | run ms/trial | finish ms/trial | peak RSS MB |"
        " bytes/row | " + " | ".join(results[0]["reads"]) + " | load1 |"
    )
    for r in results:
        print(row(r))


if __name__ == "__main__":
    main()
