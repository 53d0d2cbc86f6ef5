"""Per-trial overhead of hpsearch vs the alternatives, measured in one run.

A no-op trainable (5 epochs x 4 metrics); per-trial cost = stage wall time / trials, Ray
start excluded (one local Ray with 2 CPUs serves every contender). Rounds alternate the
contenders so a slow moment of the machine hits all of them; medians are reported. Before
each contender the script waits until Ray has every CPU free again and runs a few empty
tasks, so that no contender pays for starting Ray's worker processes.

    python benchmarks/overhead.py [--trials 1000] [--rounds 3] [--tune-trials 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"

import numpy as np  # noqa: E402
import ray  # noqa: E402

import hpsearch  # noqa: E402
from hpsearch.space import Numeric, Space  # noqa: E402
from storage import Status  # noqa: E402
from trainables.noop import train as noop  # noqa: E402

EPOCHS = 5
SPACE = Space({"x": Numeric("loguniform", 1e-3, 10.0)})


def hpsearch_stage(trials: int, workdir: Path) -> float:
    """A coarse stage through the Python API, on the Ray started in main().

    Timed from the stage's first progress report (its trials stored, the executor ready) to
    its last (every result committed): the run, without planning and finishing the stage.
    """
    spec = {
        "name": "bench",
        "trainable": "noop",
        "metric": "val_acc",
        "mode": "max",
        "space": SPACE.to_dict(),
        "coarse": {"trials": trials, "epochs": EPOCHS},
    }
    db = workdir / f"bench-{time.monotonic_ns()}.db"
    study = hpsearch.Study.from_spec(spec, db=db)
    marks: list[float] = []
    stage = study.coarse(on_progress=lambda _: marks.append(time.perf_counter()))
    rows = study.store.engine.connect().exec_driver_sql("SELECT count(*) FROM metrics").scalar()
    assert stage.counts == {Status.COMPLETED: trials} and rows == trials * EPOCHS * 4, (stage, rows)
    study.close()
    return marks[-1] - marks[0]


@ray.remote(num_returns="streaming")
def _streaming_trial(x: float):  # type: ignore[no-untyped-def]
    yield from noop({"x": x}, epochs=EPOCHS, seed=0)


def plain_ray(trials: int, _workdir: Path, in_flight: int = 8) -> float:
    """The floor: one streaming task per trial, a few in flight per CPU, polled by ray.wait."""
    todo = [c["x"] for c in SPACE.sample(trials, np.random.default_rng(0))]
    start = time.perf_counter()
    gens: list = []
    received = 0
    while todo or gens:
        while todo and len(gens) < in_flight:
            gens.append(_streaming_trial.remote(todo.pop()))
        ready, _ = ray.wait(gens, num_returns=1)
        try:
            ray.get(next(ready[0]))
            received += 1
        except StopIteration:
            gens.remove(ready[0])
    assert received == trials * EPOCHS
    return time.perf_counter() - start


def ray_tune(trials: int, workdir: Path, *, reuse: bool) -> float:
    from ray import tune

    def trainable(config: dict) -> None:
        for metrics in noop(config, epochs=EPOCHS, seed=0):
            tune.report(metrics)

    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.loguniform(1e-3, 10.0)},
        tune_config=tune.TuneConfig(num_samples=trials, reuse_actors=reuse),
        run_config=tune.RunConfig(storage_path=str(workdir / "tune"), verbose=0),
    )
    start = time.perf_counter()
    results = tuner.fit()
    assert len(results) == trials and not results.errors
    return time.perf_counter() - start


def optuna_sqlite(trials: int, workdir: Path) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{workdir / f'optuna-{time.monotonic_ns()}.db'}"
    study = optuna.create_study(
        storage=storage, sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize"
    )

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 1e-3, 10.0, log=True)
        for epoch, metrics in enumerate(noop({"x": x}, epochs=EPOCHS, seed=0), start=1):
            trial.report(metrics["val_acc"], epoch)
            for name in ("train_loss", "val_loss", "lr"):
                trial.set_user_attr(f"{name}/{epoch}", metrics[name])
        return metrics["val_acc"]

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - start


@ray.remote
def _nothing() -> None:
    pass


def settle() -> None:
    """Let the previous contender's actors go, then make sure idle task workers exist.

    Ray Tune's actors take a while to release their CPUs, and Ray replaces idle workers after
    them: without this the next contender pays for starting worker processes.
    """
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    time.sleep(2)
    ray.get([_nothing.remote() for _ in range(20)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tune-trials", type=int, default=20)
    parser.add_argument("--tune-reuse-trials", type=int, default=200)
    parser.add_argument("--optuna-trials", type=int, default=300)
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    contenders: list[tuple[str, int, Callable[[int, Path], float]]] = [
        ("hpsearch (every metric row committed)", args.trials, hpsearch_stage),
        ("(a) plain Ray, one streaming task per trial", args.trials, plain_ray),
        ("(b) Ray Tune, defaults", args.tune_trials, lambda n, d: ray_tune(n, d, reuse=False)),
        (
            "(c) Ray Tune, reuse_actors, loggers off",
            args.tune_reuse_trials,
            lambda n, d: ray_tune(n, d, reuse=True),
        ),
        ("(d) Optuna RandomSampler on SQLite", args.optuna_trials, optuna_sqlite),
    ]
    per_trial: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, trials, run in contenders:
                settle()
                seconds = run(trials, Path(tmp))
                per_trial[name].append(seconds / trials * 1000)
                print(f"round {round_ + 1}: {name}: {per_trial[name][-1]:.2f} ms/trial", flush=True)
    ray.shutdown()
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, ray {ray.__version__}\n"
    )
    print("| contender | trials per round | median ms/trial | min | max |")
    print("|---|---:|---:|---:|---:|")
    for name, trials, _ in contenders:
        values = per_trial[name]
        print(
            f"| {name} | {trials} | {statistics.median(values):.2f} | "
            f"{min(values):.2f} | {max(values):.2f} |"
        )


if __name__ == "__main__":
    main()
