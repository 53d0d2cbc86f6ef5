"""Loading results into pandas: hpsearch's loaders vs Optuna's `trials_dataframe()`.

Builds an hpsearch database with TRIALS x EPOCHS x 4 metrics (default 10,000 x 25 x 4 =
1,000,000 metric rows) through the Store, then times `load_trials`, `load_metrics` (long)
and `metrics_wide`. Builds an Optuna SQLite study with the same number of steps per trial
(one intermediate value per step, as Optuna reports one objective) and times
`study.trials_dataframe()` (which loads every trial with its intermediate values). Building
the Optuna database is slow, so `--optuna-trials` may be smaller; times are then also given
per 1,000 trials.

    RAY_USAGE_STATS_ENABLED=0 python benchmarks/loaders.py [--trials 10000] [--epochs 25]
        [--optuna-trials 10000] [--repeat 3] [--dir /tmp/hpsearch-bench] [--reuse]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path
from statistics import median

import numpy as np

import storage
from storage import Batch, Mode, StageKind, Status, Store

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")


def build_hpsearch(path: Path, trials: int, epochs: int) -> float:
    """A finished coarse stage with `trials` trials of `epochs` epochs; returns build seconds."""
    start = time.perf_counter()
    store = Store(str(path))
    study = store.ensure_study("bench", "bench:train", "val_acc", Mode.MAX)
    rng = np.random.default_rng(0)
    lrs = 10 ** rng.uniform(-6, 1, trials)
    regs = 10 ** rng.uniform(-5, 1, trials)
    configs = [
        {"lr": float(lr), "reg": float(reg), "batch": int(b), "update": u}
        for lr, reg, b, u in zip(
            lrs,
            regs,
            rng.integers(16, 512, trials),
            rng.choice(["sgd", "adam"], trials),
            strict=True,
        )
    ]
    ranges = {
        "lr": {"type": "loguniform", "low": 1e-6, "high": 10.0},
        "reg": {"type": "loguniform", "low": 1e-5, "high": 10.0},
        "batch": {"type": "lograndint", "low": 16, "high": 512},
        "update": {"type": "choice", "values": ["sgd", "adam"]},
    }
    stage = store.begin_stage(
        study.study_id,
        StageKind.COARSE,
        seed=0,
        epochs=epochs,
        ranges=ranges,
        fixed={},
        configs=configs,
        seeds=list(range(trials)),
    )
    ids = [t.trial_id for t in store.trials(stage.stage_id)]
    for first in range(0, trials, 500):
        batch = Batch()
        now = storage._store.now()
        for tid in ids[first : first + 500]:
            batch.start(tid, 1, None, now)
            for epoch in range(1, epochs + 1):
                acc = 1 - math.exp(-epoch / 5) * 0.9
                row = {"train_loss": 1 / epoch, "train_acc": acc, "val_loss": 1.1 / epoch}
                for name, value in {**row, "val_acc": acc * 0.95}.items():
                    batch.metrics.append(
                        {
                            "trial_id": tid,
                            "attempt": 1,
                            "epoch": epoch,
                            "name": name,
                            "value": value,
                        }
                    )
            batch.finish(
                tid,
                Status.COMPLETED,
                attempt=1,
                error=None,
                best=(0.9, epochs),
                epochs_run=epochs,
                at=now,
            )
        store.record(batch)
    store.finish_stage(stage.stage_id)
    store.close()
    return time.perf_counter() - start


def build_optuna(path: Path, trials: int, epochs: int) -> float:
    """An Optuna SQLite study with `trials` finished trials of `epochs` intermediate values."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    study = optuna.create_study(
        study_name="bench", storage=f"sqlite:///{path}", direction="maximize"
    )
    rng = np.random.default_rng(0)
    dists = {
        "lr": FloatDistribution(1e-6, 10.0, log=True),
        "reg": FloatDistribution(1e-5, 10.0, log=True),
        "batch": IntDistribution(16, 512, log=True),
        "update": CategoricalDistribution(["sgd", "adam"]),
    }
    for _ in range(trials):
        params = {
            "lr": float(10 ** rng.uniform(-6, 1)),
            "reg": float(10 ** rng.uniform(-5, 1)),
            "batch": int(rng.integers(16, 512)),
            "update": str(rng.choice(["sgd", "adam"])),
        }
        curve = {e: 0.95 * (1 - math.exp(-e / 5) * 0.9) for e in range(1, epochs + 1)}
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dists, value=0.9, intermediate_values=curve
            )
        )
    return time.perf_counter() - start


def timed(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--optuna-trials", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/hpsearch-bench"))
    parser.add_argument("--reuse", action="store_true", help="Keep databases of an earlier run.")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    db, odb = args.dir / "loaders.db", args.dir / "optuna.db"
    reuse = args.reuse and db.exists() and odb.exists()
    if not reuse:
        for p in args.dir.glob("*.db*"):
            p.unlink()
        built = build_hpsearch(db, args.trials, args.epochs)
        print(f"built hpsearch db: {args.trials} trials in {built:.1f}s")
    rows = args.trials * args.epochs * len(METRICS)
    t_trials, trials = timed(lambda: storage.load_trials(str(db), "bench"), args.repeat)
    t_metrics, metrics = timed(lambda: storage.load_metrics(str(db), "bench"), args.repeat)
    t_wide, _ = timed(lambda: storage.metrics_wide(metrics), args.repeat)  # type: ignore[arg-type]
    t_one, _ = timed(lambda: storage.load_metrics(str(db), "bench", names=["val_acc"]), args.repeat)
    assert len(trials) == args.trials and len(metrics) == rows  # type: ignore[arg-type]

    if not reuse:
        built_o = build_optuna(odb, args.optuna_trials, args.epochs)
        print(f"built optuna db: {args.optuna_trials} trials in {built_o:.1f}s")
    import optuna

    def optuna_df():  # type: ignore[no-untyped-def]
        study = optuna.load_study(study_name="bench", storage=f"sqlite:///{odb}")
        return study.trials_dataframe(attrs=("number", "value", "params", "state"))

    t_optuna, frame = timed(optuna_df, args.repeat)
    assert len(frame) == args.optuna_trials  # type: ignore[arg-type]

    import pandas
    import sqlalchemy

    cpu = platform.processor() or platform.machine()
    print(f"\nmachine: {cpu}, python {platform.python_version()}")
    versions = (pandas.__version__, optuna.__version__, sqlalchemy.__version__)
    print("pandas {}, optuna {}, sqlalchemy {}".format(*versions))
    n, no, steps = args.trials, args.optuna_trials, args.optuna_trials * args.epochs
    table = [
        ("hpsearch `load_trials` (wide, 4 params)", n, n, t_trials),
        ("hpsearch `load_metrics` (long, 4 metrics)", n, rows, t_metrics),
        ("hpsearch `load_metrics(names=['val_acc'])`", n, rows // 4, t_one),
        ("pandas `metrics_wide` (pivot in memory)", n, rows, t_wide),
        (f"Optuna `load_study` + `trials_dataframe()` ({steps} steps)", no, no, t_optuna),
    ]
    print(f"\n| what | trials | rows | seconds (median of {args.repeat}) | s per 1,000 trials |")
    print("|---|---:|---:|---:|---:|")
    for what, trials_n, rows_n, seconds in table:
        per_k = seconds * 1000 / trials_n
        print(f"| {what} | {trials_n:,} | {rows_n:,} | {seconds:.2f} | {per_k:.3f} |")


if __name__ == "__main__":
    main()
