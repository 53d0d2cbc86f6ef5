"""Bytes per metric row on SQLite: schema version 3 (`metrics` a table, names as text) against
version 7 (`metric_values` WITHOUT ROWID keyed by name ids, `metrics` a view), and a version-3
file upgraded by `hpsearch db upgrade` (before and after VACUUM).

    python benchmarks/compact_rows.py [--trials 100000] [--epochs 20] [--in-flight 16]
    python benchmarks/compact_rows.py --store-only --hpsearch /path/to/older/checkout

Both files get the same rows in the same order: `--in-flight` trials at a time report one epoch
each in turn (4 metrics an epoch, random values), committed in batches of about 5,000 rows as
the driver does. Version 7 is written through `Store.record` (the real write path); version 3,
which this hpsearch no longer writes, with the same rows through sqlite3. Trials are
bulk-inserted with SQL in both. Sizes after a WAL checkpoint (TRUNCATE).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

NAMES = ("train_loss", "train_acc", "val_loss", "val_acc")
BATCH_ROWS = 5000


Row = tuple[int, int, str, float]


def batches(trials: int, epochs: int, in_flight: int) -> Iterator[list[Row]]:
    """(trial_id, epoch, name, value) rows in commit order, trials interleaved."""
    rng = np.random.default_rng(0)
    next_trial, running, rows = 1, dict[int, int](), list[Row]()
    while next_trial <= trials or running:
        while len(running) < in_flight and next_trial <= trials:
            running[next_trial] = 1
            next_trial += 1
        for trial, epoch in list(running.items()):
            rows += [(trial, epoch, n, float(v)) for n, v in zip(NAMES, rng.random(4), strict=True)]
            if epoch == epochs:
                del running[trial]
            else:
                running[trial] = epoch + 1
        if len(rows) >= BATCH_ROWS:
            yield rows
            rows = []
    if rows:
        yield rows


def new_database(path: Path, version: int, trials: int) -> None:
    """A database made by the revisions up to `version`, with one stage of `trials` trials."""
    from storage import to_url
    from storage._migrate import migrate, migration_engine

    engine = migration_engine(to_url(str(path)))
    with engine.begin() as conn:
        migrate(conn, None, str(path), to=version)
    engine.dispose()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO studies VALUES (1, 'bench', 'noop', 'val_acc', 'max', '2026-01-01')"
        )
        conn.execute(
            "INSERT INTO stages (stage_id, study_id, kind, status, seed, epochs, n_trials, "
            "ranges, fixed, created_at) VALUES (1, 1, 'coarse', 'running', 0, 0, ?, '{}', '{}', "
            "'2026-01-01')",
            (trials,),
        )
        conn.executemany(
            "INSERT INTO trials (trial_id, stage_id, number, status, seed, attempts, epochs_run) "
            "VALUES (?, 1, ?, 'running', 0, 1, 0)",
            ((i + 1, i) for i in range(trials)),
        )
    conn.close()


def size(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size


def write_v3(path: Path, args: argparse.Namespace) -> tuple[int, float]:
    new_database(path, 3, args.trials)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    rows, start = 0, time.perf_counter()
    for batch in batches(args.trials, args.epochs, args.in_flight):
        with conn:
            conn.executemany("INSERT INTO metrics VALUES (?, 1, ?, ?, ?)", batch)
        rows += len(batch)
    conn.close()
    return rows, time.perf_counter() - start


def write_store(path: Path, args: argparse.Namespace) -> tuple[int, float]:
    """Through `Store.record`, into a database at the imported hpsearch's schema version."""
    from storage import SCHEMA_VERSION, Batch, Store

    new_database(path, SCHEMA_VERSION, args.trials)
    store = Store(str(path))
    rows, start = 0, time.perf_counter()
    for part in batches(args.trials, args.epochs, args.in_flight):
        batch = Batch()
        batch.metrics = [
            {"trial_id": t, "attempt": 1, "epoch": e, "name": n, "value": v} for t, e, n, v in part
        ]
        store.record(batch)
        rows += len(part)
    store.close()
    return rows, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument(
        "--store-only",
        action="store_true",
        help="only the Store's write, at the schema version of the hpsearch imported",
    )
    parser.add_argument(
        "--hpsearch", type=Path, default=ROOT, help="the checkout to import (e.g. an older one)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(args.hpsearch.resolve()))
    from storage import SCHEMA_VERSION

    with tempfile.TemporaryDirectory() as tmp:
        store_db = Path(tmp) / "store.db"
        rows, seconds = write_store(store_db, args)
        print(f"{rows:,} metric rows ({args.trials:,} trials x {args.epochs} epochs x 4)")
        print(f"{'schema':44} {'file MB':>9} {'bytes/row':>10} {'write s':>8}")
        label = f"version {SCHEMA_VERSION} through Store.record"
        n = size(store_db)
        print(f"{label:44} {n / 1e6:9.1f} {n / rows:10.1f} {seconds:8.1f}")
        if args.store_only:
            return
        v3 = Path(tmp) / "v3.db"
        rows3, t3 = write_v3(v3, args)
        assert rows3 == rows
        n = size(v3)
        label = "version 3 through sqlite3 executemany"
        print(f"{label:44} {n / 1e6:9.1f} {n / rows:10.1f} {t3:8.1f}")
        shutil.copy(v3, Path(tmp) / "up.db")
        up = Path(tmp) / "up.db"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "hpsearch", "db", "upgrade", "--db", str(up)],
            cwd=tmp,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(args.hpsearch.resolve())},
        )
        if done.returncode != 0:
            sys.exit(f"hpsearch db upgrade failed: {done.stderr}")
        upgrade = time.perf_counter() - start
        n = size(up)
        print(f"{'version 3 upgraded to 7':44} {n / 1e6:9.1f} {n / rows:10.1f} {upgrade:8.1f}")
        conn = sqlite3.connect(up)
        conn.execute("VACUUM")
        conn.close()
        n = size(up)
        print(f"{'  ... then VACUUM':44} {n / 1e6:9.1f} {n / rows:10.1f}")


if __name__ == "__main__":
    main()
