"""The dashboard at scale: first render of every view and live-update latency on a study of
100,000 trials x 20 epochs, while a writer finishes trials at >= 1,000 per second.

    python benchmarks/ui_scale.py [--trials 100000] [--running 30000] [--rate 1500] [--repeats 3]

The study is bulk-inserted with SQL (schema from the Store): a finished coarse stage and a
running fine stage of `--running` pending trials, two metrics per epoch. A writer process then
finishes the running stage's trials at `--rate` per second in 0.25 s transactions (as the driver
commits: trial rows updated, their 20 x 2 metric rows inserted) while Debian's chromium keeps the
live view open; latency = the browser's Resource Timing duration of each /live/ request.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage import Store  # noqa: E402
from tests._ui import CHROMIUM, CHROMIUM_ARGS, UiServer  # noqa: E402

EPOCHS = 20
VAL_ACC, TRAIN_ACC = 1, 2  # metric name ids (the table metric_names)
NAME_IDS = [(VAL_ACC, "val_acc"), (TRAIN_ACC, "train_acc")]
RANGES = {
    "lr": {"type": "loguniform", "low": 1e-5, "high": 1.0},
    "reg": {"type": "loguniform", "low": 1e-5, "high": 1.0},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.6},
    "update": {"type": "choice", "values": ["sgd", "adam", "nesterov"]},
}


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def build(db: Path, trials: int, running: int, seed: int = 0) -> tuple[int, int]:
    """The study `big` with a finished coarse stage and a running fine one; (stage ids)."""
    rng = np.random.default_rng(seed)
    store = Store(str(db))
    study = store.ensure_study("big", "synthetic", "val_acc", "max")
    store.close()
    conn = sqlite3.connect(db)
    t0 = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2)
    stages = []
    for kind, n, status in (("coarse", trials - running, "finished"), ("fine", running, "running")):
        cur = conn.execute(
            "INSERT INTO stages (study_id, kind, parent_stage_id, status, seed, epochs, "
            "n_trials, ranges, fixed, proposal, created_at, finished_at) "
            "VALUES (?, ?, ?, ?, 0, ?, ?, ?, '{}', NULL, ?, ?)",
            (
                study.study_id,
                kind,
                stages[0] if stages else None,
                status,
                EPOCHS,
                n,
                json.dumps(RANGES),
                stamp(t0),
                stamp(t0) if status == "finished" else None,
            ),
        )
        stages.append(int(cur.lastrowid or 0))
    first = trials - running
    lr = 10 ** rng.uniform(-5, 0, trials)
    reg = 10 ** rng.uniform(-5, 0, trials)
    dropout = rng.uniform(0, 0.6, trials)
    update = rng.integers(0, 3, trials)
    quality = np.exp(-0.5 * ((np.log10(lr) + 2.5) ** 2 + (np.log10(reg) + 3) ** 2))
    best = 0.1 + 0.85 * quality
    rows = []
    for i in range(trials):
        finished = i < first
        rows.append(
            (
                i + 1,
                stages[0] if finished else stages[1],
                i if finished else i - first,
                "completed" if finished else "pending",
                i,
                1 if finished else 0,
                stamp(t0 + timedelta(milliseconds=i)) if finished else None,
                float(best[i]) if finished else None,
                EPOCHS if finished else None,
                EPOCHS if finished else 0,
            )
        )
    conn.executemany(
        "INSERT INTO trials (trial_id, stage_id, number, status, seed, attempts, finished_at, "
        "best_value, best_epoch, epochs_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    names = ["sgd", "adam", "nesterov"]
    conn.executemany(
        "INSERT INTO params (trial_id, name, value, text) VALUES (?, ?, ?, ?)",
        (
            row
            for i in range(trials)
            for row in (
                (i + 1, "lr", float(lr[i]), None),
                (i + 1, "reg", float(reg[i]), None),
                (i + 1, "dropout", float(dropout[i]), None),
                (i + 1, "update", None, names[update[i]]),
            )
        ),
    )
    conn.executemany("INSERT INTO metric_names (name_id, name) VALUES (?, ?)", NAME_IDS)
    conn.executemany(
        "INSERT INTO metric_values (trial_id, attempt, epoch, name_id, value) "
        "VALUES (?, 1, ?, ?, ?)",
        metric_rows(range(1, first + 1), best),
    )
    conn.commit()
    conn.close()
    return stages[0], stages[1]


def metric_rows(trial_ids, best):  # type: ignore[no-untyped-def]
    curve = 1 - np.exp(-np.arange(1, EPOCHS + 1) / 5)
    for tid in trial_ids:
        for e in range(EPOCHS):
            value = float(best[tid - 1] * curve[e])
            yield (tid, e + 1, VAL_ACC, value)
            yield (tid, e + 1, TRAIN_ACC, value + 0.02)


def writer(db: str, stage: int, first_id: int, n: int, rate: float, report) -> None:  # type: ignore[no-untyped-def]
    """Finish trials first_id.. at `rate` per second, one transaction every 0.25 s."""
    conn = sqlite3.connect(db, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    rng = np.random.default_rng(1)
    best = rng.uniform(0.1, 0.95, first_id + n)
    start, done, next_id = time.monotonic(), 0, first_id
    while done < n:
        target = min(n, int((time.monotonic() - start + 0.25) * rate))
        ids = list(range(next_id, next_id + target - done))
        if ids:
            at = stamp(datetime.now(UTC).replace(tzinfo=None))
            with conn:
                conn.executemany(
                    "UPDATE trials SET status = 'completed', attempts = 1, finished_at = ?, "
                    "best_value = ?, best_epoch = ?, epochs_run = ? WHERE trial_id = ?",
                    [(at, float(best[i - 1]), EPOCHS, EPOCHS, i) for i in ids],
                )
                conn.executemany(
                    "INSERT INTO metric_values (trial_id, attempt, epoch, name_id, value) "
                    "VALUES (?, 1, ?, ?, ?)",
                    metric_rows(ids, best),
                )
            done += len(ids)
            next_id += len(ids)
        time.sleep(max(0.0, 0.25 - (time.monotonic() - start) % 0.25))
    report.put((done, time.monotonic() - start))
    conn.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--running", type=int, default=30_000)
    parser.add_argument("--rate", type=float, default=1500.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.db"
        t = time.perf_counter()
        _, running = build(db, args.trials, args.running)
        print(
            f"built {args.trials} trials x {EPOCHS} epochs in {time.perf_counter() - t:.0f} s "
            f"({db.stat().st_size / 1e6:.0f} MB)"
        )
        views = {
            "studies": "/",
            "study": "/study/big",
            "live (first render)": f"/study/big/stage/{running}",
            "trials (sorted by best_value)": "/study/big/trials?sort=best_value&desc=1",
            "trials (filtered: lr range)": "/study/big/trials?status=completed&range=lr:0.001:0.01",
            "learning curves (top 10)": "/study/big/curves?top=10",
            "metric vs parameters": "/study/big/params",
            "parallel coordinates": "/study/big/parallel",
            "sql (per-stage example)": "/sql",
        }
        from hpsearch.ui import data

        t = time.perf_counter()
        data.scatter_points(str(db), "big")
        print(
            f"plots' data, cold (what the server reads once at start): "
            f"{time.perf_counter() - t:.2f} s"
        )
        server = UiServer(db, cwd=Path(tmp))
        time.sleep(10)  # the server's start-up read of every study's completed trials
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                print("| view | first render, median of", args.repeats, "(s) | max (s) |")
                print("|---|---:|---:|")
                for name, path in views.items():
                    times = []
                    for _ in range(args.repeats):
                        t = time.perf_counter()
                        page.goto(server.base + path)
                        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
                        if name.startswith("sql"):
                            page.click("button[data-example='5']")
                            page.wait_for_selector("#sql-table, #sql-error", timeout=120_000)
                        times.append(time.perf_counter() - t)
                    print(f"| {name} | {statistics.median(times):.2f} | {max(times):.2f} |")
                page.goto(server.base + f"/study/big/stage/{running}")
                page.wait_for_selector("body[data-ready='1']")
                report: multiprocessing.Queue = multiprocessing.Queue()
                first_id = args.trials - args.running + 1
                job = (str(db), running, first_id, args.running, args.rate, report)
                proc = multiprocessing.Process(target=writer, args=job)
                proc.start()
                proc.join()
                done, seconds = report.get()
                page.wait_for_timeout(1500)
                entries = page.evaluate(
                    "performance.getEntriesByType('resource')"
                    ".filter(e => e.name.includes('/live/'))"
                    ".map(e => [e.startTime, e.duration, e.encodedBodySize])"
                )
                shown = page.inner_text("#live-done")
                after = {}  # the plots again, now with every trial completed
                for name in ("metric vs parameters", "parallel coordinates"):
                    times = []
                    for _ in range(args.repeats):
                        t = time.perf_counter()
                        page.goto(server.base + views[name])
                        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
                        times.append(time.perf_counter() - t)
                    after[name] = (statistics.median(times), max(times), page.inner_text("h1"))
                browser.close()
        finally:
            server.stop()
    for name, (median, worst, heading) in after.items():
        print(f"after the stage: {name}: median {median:.2f} s, max {worst:.2f} s ({heading})")
    durations = [e[1] for e in entries]
    sizes = [e[2] for e in entries]
    print(
        f"\nwriter: {done} trials (each {EPOCHS} x 2 metric rows) in {seconds:.1f} s = "
        f"{done / seconds:.0f} trials/s; live view shows {shown} done"
    )
    print(
        f"live updates during and after: {len(durations)}; latency ms p50 "
        f"{percentile(durations, 50):.0f}, p95 {percentile(durations, 95):.0f}, "
        f"max {max(durations):.0f}; response bytes median {statistics.median(sizes):.0f}, "
        f"max {max(sizes)}"
    )


if __name__ == "__main__":
    main()
