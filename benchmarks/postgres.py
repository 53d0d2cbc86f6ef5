"""hpsearch's per-trial cost on PostgreSQL vs SQLite, and Optuna on the same PostgreSQL server.

No-op trials (5 epochs x 4 metrics), no Ray: hpsearch's stage driver runs them in process
(`InProcessExecutor`), so the figure is the driver's and the database's cost per trial, every
metric row committed (in hpsearch's batches). Ray's own per-trial cost is in overhead.py. Optuna
(RandomSampler, RDB storage, one commit per call as it works) runs the same objective as in
overhead.py: `report(val_acc, epoch)` plus the 3 other metrics per epoch as user attributes.

Part 1, 1,000 trials (Optuna: --optuna-trials, as it is ~100x slower per trial here): median of
--rounds rounds, each in a fresh database.
Part 2, flatness: one study of --flat-trials trials; per-trial cost of each block of 1,000
(Optuna too if --optuna-flat-trials is given).

    python benchmarks/postgres.py [--pg URL] [--trials 1000] [--rounds 3] [--optuna-trials 100]
                                  [--flat-trials 20000] [--optuna-flat-trials 0]

--pg defaults to $HPSEARCH_TEST_PG (see scripts/pg-test-server); its role must be allowed to
CREATE DATABASE: every run gets a new database `bench_<random>`, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy
from sqlalchemy import create_engine, make_url, text

from hpsearch.driver import Progress, run_stage, start_or_resume
from hpsearch.planner import StageRequest
from hpsearch.runtime.executor import InProcessExecutor, Workload
from hpsearch.space import Numeric, Space
from hpsearch.spec import FineSettings, StageSettings, StudySpec
from storage import StageKind, Store, to_url
from trainables.noop import train as noop

EPOCHS = 5
SPACE = Space({"x": Numeric("loguniform", 1e-3, 10.0)})
BLOCK = 1000


@contextmanager
def new_database(server: str) -> Iterator[str]:
    """A fresh database on the server (its URL), dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(to_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def hpsearch_stage(db: str, trials: int, workdir: Path) -> tuple[float, float, list[float]]:
    """(seconds to create the stage, seconds to run it, seconds at each 1,000 trials done)."""
    spec = StudySpec(
        path=workdir / "bench.toml",
        name="bench",
        trainable="noop",
        metric="val_acc",
        mode="max",
        space=SPACE,
        coarse=StageSettings(trials, EPOCHS),
        fine=FineSettings(1, 1),
    )
    store = Store(db)
    start = time.perf_counter()
    _, stage, _ = start_or_resume(store, spec, StageRequest(StageKind.COARSE, trials, EPOCHS))
    created = time.perf_counter() - start
    marks: list[float] = []

    def on_progress(progress: Progress) -> None:
        while progress.done >= (len(marks) + 1) * BLOCK:
            marks.append(time.perf_counter() - start)

    start = time.perf_counter()
    counts = run_stage(store, spec, stage, InProcessExecutor(Workload("noop", "val_acc", workdir)),
                       on_progress)  # fmt: skip
    elapsed = time.perf_counter() - start
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM metrics").scalar()
    assert counts == {"completed": trials} and rows == trials * EPOCHS * 4, (counts, rows)
    store.close()
    return created, elapsed, marks


def optuna_study(db: str, trials: int) -> tuple[float, list[float]]:
    """(seconds for all trials, seconds at each 1,000 trials done)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=to_url(db), sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize"
    )
    marks: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 1e-3, 10.0, log=True)
        for epoch, metrics in enumerate(noop({"x": x}, epochs=EPOCHS, seed=0), start=1):
            trial.report(metrics["val_acc"], epoch)
            for name in ("train_loss", "val_loss", "lr"):
                trial.set_user_attr(f"{name}/{epoch}", metrics[name])
        return metrics["val_acc"]

    def mark(_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if (trial.number + 1) % BLOCK == 0:
            marks.append(time.perf_counter() - start)

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials, callbacks=[mark])
    return time.perf_counter() - start, marks


def per_block_ms(marks: list[float]) -> list[float]:
    return [(b - a) / BLOCK * 1000 for a, b in zip([0.0, *marks], marks, strict=False)]


def describe_blocks(ms: list[float]) -> str:
    picks = sorted({0, 1, len(ms) // 2, len(ms) - 1})
    return ", ".join(f"block {i + 1}: {ms[i]:.2f}" for i in picks if i < len(ms))


def part_one(server: str, trials: int, optuna_trials: int, rounds: int, workdir: Path) -> None:

    def hp_sqlite() -> float:
        return hpsearch_stage(str(workdir / f"b-{uuid.uuid4().hex}.db"), trials, workdir)[1]

    def hp_postgres() -> float:
        with new_database(server) as db:
            return hpsearch_stage(db, trials, workdir)[1]

    def optuna_postgres() -> float:
        with new_database(server) as db:
            return optuna_study(db, optuna_trials)[0]

    contenders: list[tuple[str, int, Callable[[], float]]] = [
        ("hpsearch on SQLite (file, WAL)", trials, hp_sqlite),
        ("hpsearch on PostgreSQL", trials, hp_postgres),
        ("Optuna RandomSampler on PostgreSQL", optuna_trials, optuna_postgres),
    ]
    results: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    for round_ in range(rounds):
        for name, n, run in contenders:
            results[name].append(run() / n * 1000)
            print(f"round {round_ + 1}: {name}: {results[name][-1]:.2f} ms/trial", flush=True)
    print("\n| contender | trials | median ms/trial | min | max |")
    print("|---|---:|---:|---:|---:|")
    for name, n, _ in contenders:
        values = results[name]
        print(f"| {name} | {n} | {statistics.median(values):.2f} | {min(values):.2f} | "
              f"{max(values):.2f} |")  # fmt: skip


def part_two(server: str, trials: int, optuna_trials: int, workdir: Path) -> None:
    with new_database(server) as db:
        created, elapsed, marks = hpsearch_stage(db, trials, workdir)
    ms = per_block_ms(marks)
    print(f"\nhpsearch on PostgreSQL, one stage of {trials} trials: creating it (all trials "
          f"and params) {created:.1f} s, running it {elapsed:.1f} s "
          f"({elapsed / trials * 1000:.2f} ms/trial)")  # fmt: skip
    print(f"  ms/trial per block of {BLOCK}: {describe_blocks(ms)}", flush=True)
    if not optuna_trials:
        return
    with new_database(server) as db:
        total, marks = optuna_study(db, optuna_trials)
    print(f"Optuna on PostgreSQL, one study of {optuna_trials} trials: {total:.1f} s")
    print(f"  ms/trial per block of {BLOCK}: {describe_blocks(per_block_ms(marks))}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default=os.environ.get("HPSEARCH_TEST_PG"))
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--optuna-trials", type=int, default=100)
    parser.add_argument("--flat-trials", type=int, default=20_000)
    parser.add_argument("--optuna-flat-trials", type=int, default=0)
    args = parser.parse_args()
    if not args.pg:
        parser.error("--pg URL or HPSEARCH_TEST_PG is needed (see scripts/pg-test-server)")
    with create_engine(to_url(args.pg)).connect() as conn:
        server_version = conn.exec_driver_sql("SHOW server_version").scalar()
    import optuna
    import psycopg

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, PostgreSQL {server_version}, psycopg {psycopg.__version__}"
          f", SQLAlchemy {sqlalchemy.__version__}, optuna {optuna.__version__}\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        part_one(args.pg, args.trials, args.optuna_trials, args.rounds, Path(tmp))
        part_two(args.pg, args.flat_trials, args.optuna_flat_trials, Path(tmp))


if __name__ == "__main__":
    main()
