"""Per-trial overhead, end to end: hpsearch's CLI vs Optuna, Ray Tune and plain Ray scripts.

Every contender runs the same short no-op trials (`trainables.noop`: EPOCHS epochs x 4 metrics,
every epoch's metrics stored in the contender's own storage) as its own process, launched the
way a user launches it: `python -m hpsearch coarse ...` for hpsearch, `python script.py` for the
others (here: `python benchmarks/overhead.py child NAME ...`, which imports nothing heavy before
the contender's own imports). For every run:

    wall      launch -> process exit, as a shell sees it (imports and Ray's start included)
    start-up  launch -> the first trial starts
    run       the first trial starts -> the last trial's metrics are stored (hpsearch: -> the
              stage is marked finished, after its last commit and its analysis)
    rows      metric values read back from the contender's storage after the run

Contenders (see CONTENDERS): hpsearch cold (`HPSEARCH_REUSE_RAY=0`, a private Ray per command)
and warm (the warm local Ray already up); Optuna on SQLite with its defaults, with hpsearch's
pragmas (WAL, synchronous=NORMAL) and with JournalStorage; Ray Tune with its defaults and tuned;
plain Ray with one task per trial and with chunked tasks, writing the same rows to SQLite with
hpsearch's pragmas. Each figure is the median of --repeats runs; contenders alternate within a
repeat so that a busy moment of the machine hits all of them. The load average and CPU count
are printed with every run.

    python benchmarks/overhead.py [--trials 1000,10000] [--repeats 3] [--cpus 2]
        [--only hpsearch-cold,...] [--cap tune-default=100,...] [--json results.json]
    python benchmarks/overhead.py --table a.json b.json     # one table from saved runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 20
METRICS = ("train_loss", "val_loss", "val_acc", "lr")
LOW, HIGH = 1e-3, 10.0  # the one parameter x, log-uniform
CHUNKS_PER_CPU = 4  # plain Ray, chunked: the trials split into this many tasks per CPU
WARM_PAUSE = 5.0  # after a command the warm Ray prestarts the next command's workers
SPEC = """
name = "overhead"
trainable = "noop"
metric = "val_acc"
mode = "max"
seed = 0

[space]
x = {{ type = "loguniform", low = {low}, high = {high} }}

[coarse]
trials = {trials}
epochs = {epochs}
"""


# ---- what runs inside a child process (a user's script) --------------------------------------


def noop_rows(trial_id: int, x: float) -> list[tuple[int, int, str, float]]:
    """One trial of trainables.noop as (trial_id, epoch, name, value) rows."""
    from trainables.noop import train

    rows: list[tuple[int, int, str, float]] = []
    for epoch, metrics in enumerate(train({"x": x}, epochs=EPOCHS, seed=0), start=1):
        rows.extend((trial_id, epoch, name, value) for name, value in metrics.items())
    return rows


def mark_first(marker: str) -> None:
    """Record the first trial's start time once, across processes (O_EXCL: the first wins)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, repr(time.time()).encode())
    os.close(fd)


def start_ray(cpus: int) -> None:
    """The ray.init hpsearch uses for its own local Ray: loopback, no dashboard, quiet."""
    import logging

    import ray

    ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )


def sqlite_pragmas(conn: Any) -> None:
    """hpsearch's pragmas (storage/_engine.py): WAL journal, synchronous=NORMAL."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")


def optuna_child(storage_kind: str, trials: int, workdir: Path, marker: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no log line per trial
    storage = optuna_storage(storage_kind, workdir)
    study = optuna.create_study(
        study_name="overhead",
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=0),
        direction="maximize",
    )
    from trainables.noop import train

    def objective(trial: optuna.Trial) -> float:
        mark_first(marker)
        x = trial.suggest_float("x", LOW, HIGH, log=True)
        for epoch, metrics in enumerate(train({"x": x}, epochs=EPOCHS, seed=0), start=1):
            trial.report(metrics["val_acc"], epoch)
            others = {k: v for k, v in metrics.items() if k != "val_acc"}
            trial.set_user_attr(f"epoch_{epoch}", others)
        return float(metrics["val_acc"])

    study.optimize(objective, n_trials=trials)


def optuna_storage(kind: str, workdir: Path) -> Any:
    import optuna

    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(workdir / "optuna.log")))
    url = f"sqlite:///{workdir / 'optuna.db'}"
    if kind == "default":
        return url  # what the tutorial does: create_study(storage="sqlite:///...")
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(url)
    event.listen(storage.engine, "connect", lambda conn, _record: sqlite_pragmas(conn))
    storage.engine.dispose()  # reconnect: every pooled connection gets the pragmas
    return storage


def plain_ray_child(chunked: bool, trials: int, workdir: Path, cpus: int, marker: str) -> None:
    import numpy as np
    import ray

    start_ray(cpus)
    conn = sqlite3.connect(workdir / "ray.db")
    sqlite_pragmas(conn)
    conn.execute("CREATE TABLE trials (trial_id INTEGER PRIMARY KEY, x REAL)")
    conn.execute(
        "CREATE TABLE metrics (trial_id INTEGER, epoch INTEGER, name TEXT, value REAL,"
        " PRIMARY KEY (trial_id, epoch, name))"
    )
    xs = np.exp(np.random.default_rng(0).uniform(np.log(LOW), np.log(HIGH), trials))
    with conn:
        conn.executemany("INSERT INTO trials VALUES (?, ?)", enumerate(xs.tolist()))

    @ray.remote
    def run_trials(items: list[tuple[int, float]]) -> list[tuple[int, int, str, float]]:
        mark_first(marker)
        return [row for trial_id, x in items for row in noop_rows(trial_id, x)]

    items = list(enumerate(xs.tolist()))
    size = -(-trials // (cpus * CHUNKS_PER_CPU)) if chunked else 1
    pending = [run_trials.remote(items[i : i + size]) for i in range(0, trials, size)]
    while pending:  # store what has finished, one transaction per wake-up
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.1)
        with conn:
            for rows in ray.get(ready):
                conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", rows)
    conn.close()
    ray.shutdown()


def tune_child(tuned: bool, trials: int, workdir: Path, cpus: int, marker: str) -> None:
    if tuned:
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    from ray import tune

    from trainables.noop import train

    start_ray(cpus)

    def trainable(config: dict[str, float]) -> None:
        mark_first(marker)
        for metrics in train(config, epochs=EPOCHS, seed=0):
            tune.report(metrics)

    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.loguniform(LOW, HIGH)},
        tune_config=tune.TuneConfig(
            num_samples=trials, metric="val_acc", mode="max", reuse_actors=tuned
        ),
        run_config=tune.RunConfig(
            name="overhead", storage_path=str(workdir / "tune"), verbose=0 if tuned else None
        ),
    )
    results = tuner.fit()
    assert len(results) == trials and not results.errors, results.errors


def child(name: str, trials: int, workdir: Path, cpus: int) -> None:
    marker = str(workdir / "first-trial")
    if name.startswith("optuna-"):
        optuna_child(name.removeprefix("optuna-"), trials, workdir, marker)
    elif name.startswith("ray-"):
        plain_ray_child(name == "ray-chunked", trials, workdir, cpus, marker)
    elif name.startswith("tune-"):
        tune_child(name == "tune-tuned", trials, workdir, cpus, marker)
    else:
        raise SystemExit(f"overhead.py child: unknown contender {name!r}")
    # the run ends when the last trial is stored: here, before interpreter shutdown
    (workdir / "run-end").write_text(repr(time.time()))


# ---- the parent: launch, time, read back ------------------------------------------------------


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSEARCH_", "TUNE_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env |= {"HPSEARCH_HOME": str(home), "HPSEARCH_RAY_IDLE_SECONDS": "7200"}
    return env


def launch(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(launch time as a UTC timestamp, wall seconds); the output goes to cwd/output.txt."""
    launched = time.time()
    start = time.perf_counter()
    with open(cwd / "output.txt", "w") as out:
        code = subprocess.run(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        ).returncode
    wall = time.perf_counter() - start
    if code != 0:
        tail = (cwd / "output.txt").read_text()[-3000:]
        raise SystemExit(f"{' '.join(cmd)} failed (exit {code}):\n{tail}")
    return launched, wall


def utc(stamp: str) -> float:
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


def run_hpsearch(trials: int, workdir: Path, env: dict[str, str], cpus: int) -> dict[str, float]:
    (workdir / "spec.toml").write_text(
        SPEC.format(low=LOW, high=HIGH, trials=trials, epochs=EPOCHS)
    )
    db = workdir / "hpsearch.db"
    cmd = [sys.executable, "-m", "hpsearch", "coarse", "spec.toml", "--db", str(db), "-q"]
    launched, wall = launch([*cmd, "--cpus", str(cpus)], env, workdir)
    with sqlite3.connect(db) as conn:
        created, finished, first, last = conn.execute(
            "SELECT s.created_at, s.finished_at, min(t.started_at), max(t.finished_at)"
            " FROM stages s JOIN trials t USING (stage_id) WHERE t.status = 'completed'"
        ).fetchone()
        (rows,) = conn.execute("SELECT count(*) FROM metrics").fetchone()
    # the run ends with the stage: its last commit and its analysis are inside
    return {
        "wall": wall,
        "startup": utc(first) - launched,
        "run": utc(finished) - utc(first),
        "rows": rows,
        "setup": utc(first) - utc(created),
        "trials_only": utc(last) - utc(first),
    }


def run_child(
    name: str, trials: int, workdir: Path, env: dict[str, str], cpus: int
) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "child", name]
    cmd += ["--trials", str(trials), "--dir", str(workdir), "--cpus", str(cpus)]
    launched, wall = launch(cmd, env, workdir)
    first = float((workdir / "first-trial").read_text())
    end = float((workdir / "run-end").read_text())
    return {
        "wall": wall,
        "startup": first - launched,
        "run": end - first,
        "rows": rows_of(name, workdir),
    }


def rows_of(name: str, workdir: Path) -> int:
    """Metric values the contender stored, read back from its storage."""
    if name.startswith("ray-"):
        with sqlite3.connect(workdir / "ray.db") as conn:
            return int(conn.execute("SELECT count(*) FROM metrics").fetchone()[0])
    if name.startswith("optuna-"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna_storage(name.removeprefix("optuna-"), workdir)
        study = optuna.load_study(study_name="overhead", storage=storage)
        per_trial = (len(t.intermediate_values) + 3 * len(t.user_attrs) for t in study.trials)
        return int(sum(per_trial))
    # Ray Tune: one JSON line of every metric per reported epoch in each trial's result.json
    lines = 0
    for path in (workdir / "tune").rglob("result.json"):
        with open(path) as f:
            lines += sum(1 for line in f if line.strip())
    return lines * len(METRICS)


CONTENDERS: dict[str, str] = {
    "hpsearch-cold": "hpsearch CLI, cold: private Ray (`HPSEARCH_REUSE_RAY=0`)",
    "hpsearch-warm": "hpsearch CLI, warm Ray already up",
    "optuna-default": 'Optuna, `storage="sqlite:///..."` (defaults)',
    "optuna-wal": "Optuna, RDBStorage + WAL, synchronous=NORMAL",
    "optuna-journal": "Optuna, JournalStorage (JournalFileBackend)",
    "tune-default": "Ray Tune, defaults (Tuner, default loggers)",
    "tune-tuned": "Ray Tune, reuse_actors, auto loggers off, verbose=0",
    "ray-task": "plain Ray, one task per trial -> SQLite",
    "ray-chunked": f"plain Ray, {CHUNKS_PER_CPU} tasks per CPU -> SQLite",
}


class Bench:
    def __init__(self, root: Path, cpus: int) -> None:
        self.root = root
        self.cpus = cpus
        self.env = base_env(root / "home")
        self.counter = 0
        self.warm_up = False

    def fresh_dir(self) -> Path:
        self.counter += 1
        path = self.root / f"run-{self.counter}"
        path.mkdir()
        return path

    def run(self, name: str, trials: int) -> dict[str, float]:
        workdir = self.fresh_dir()
        if name == "hpsearch-cold":
            return run_hpsearch(trials, workdir, self.env | {"HPSEARCH_REUSE_RAY": "0"}, self.cpus)
        if name == "hpsearch-warm":
            env = self.env | {"HPSEARCH_REUSE_RAY": "1"}
            if not self.warm_up:  # the command that starts the warm Ray is not timed
                run_hpsearch(1, self.fresh_dir(), env, self.cpus)
                self.warm_up = True
            time.sleep(WARM_PAUSE)
            return run_hpsearch(trials, workdir, env, self.cpus)
        return run_child(name, trials, workdir, self.env, self.cpus)

    def stop_warm_ray(self) -> None:
        if self.warm_up:
            cmd = [sys.executable, "-m", "hpsearch", "ray", "stop"]
            subprocess.run(cmd, env=self.env, cwd=self.root, capture_output=True)


def versions() -> str:
    from importlib.metadata import version

    names = ("ray", "optuna", "sqlalchemy", "numpy")
    found = ", ".join(f"{n} {version(n)}" for n in names)
    return f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {found}"


def plan(options: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(contender, its trials, the trial count of the table) for every figure, a capped
    contender once per trial count it can reach."""
    runs: list[tuple[str, int, int]] = []
    for trials in options.trials:
        for name in options.only:
            n = min(trials, options.cap.get(name, trials))
            if all((name, n) != (r[0], r[1]) for r in runs):
                runs.append((name, n, trials))
    return runs


def measure(options: argparse.Namespace, bench: Bench) -> Iterator[dict[str, Any]]:
    runs = plan(options)
    for trials in options.trials:
        for repeat in range(1, options.repeats + 1):
            for name, n, _ in (r for r in runs if r[2] == trials):
                load = os.getloadavg()[0]
                figures = bench.run(name, n)
                record = {"contender": name, "trials": n, "repeat": repeat, "load": load}
                record |= figures | {"load_after": os.getloadavg()[0]}
                print(json.dumps(record), flush=True)
                yield record


def table(records: list[dict[str, Any]], cpus: int) -> str:
    lines = [
        "| contender | trials | end-to-end wall (s) | start-up (s) | run (s) | run ms/trial "
        "| metric values stored | load avg (1 min) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["contender"], r["trials"]), []).append(r)
    for (name, trials), rs in sorted(groups.items(), key=lambda g: (order(g[0][0]), g[0][1])):

        def med(key: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(statistics.median(r[key] for r in rs))

        loads = [r["load"] for r in rs]
        lines.append(
            f"| {CONTENDERS[name]} | {trials:,} | {med('wall'):.1f} | {med('startup'):.1f} "
            f"| {med('run'):.2f} | {med('run') / trials * 1000:.2f} | {int(med('rows')):,} "
            f"| {min(loads):.1f}-{max(loads):.1f} (n={len(rs)}) |"
        )
    lines.append(f"\n({cpus} CPUs given to every contender; medians of n runs)\n")
    lines.append(
        "| hpsearch | trials | set-up (s) | trials only: first start -> last end, ms/trial |"
    )
    lines.append("|---|---:|---:|---:|")
    for (name, trials), rs in sorted(groups.items(), key=lambda g: (order(g[0][0]), g[0][1])):
        if name.startswith("hpsearch"):
            setup = statistics.median(r["setup"] for r in rs)
            only = statistics.median(r["trials_only"] for r in rs) / trials * 1000
            lines.append(f"| {CONTENDERS[name]} | {trials:,} | {setup:.2f} | {only:.2f} |")
    return "\n".join(lines)


def order(name: str) -> int:
    return list(CONTENDERS).index(name)


def parse_cap(text: str) -> dict[str, int]:
    pairs = (item.split("=") for item in text.split(",") if item)
    return {name: int(n) for name, n in pairs}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        parser = argparse.ArgumentParser(prog="overhead.py child")
        parser.add_argument("name", choices=[n for n in CONTENDERS if not n.startswith("hps")])
        parser.add_argument("--trials", type=int, required=True)
        parser.add_argument("--dir", type=Path, required=True)
        parser.add_argument("--cpus", type=int, required=True)
        args = parser.parse_args(sys.argv[2:])
        child(args.name, args.trials, args.dir, args.cpus)
        return
    options = parse_options()
    if options.table:
        saved = [json.loads(path.read_text()) for path in options.table]
        print("\n".join(s["header"] for s in saved))
        print(table([r for s in saved for r in s["records"]], options.cpus))
        return
    header = (
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {versions()}\n"
        f"# {EPOCHS} epochs x {len(METRICS)} metrics per trial; trials {options.trials}; "
        f"repeats {options.repeats}; caps {options.cap or 'none'}"
    )
    print(header, flush=True)
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-overhead-") as tmp:
        bench = Bench(Path(tmp), options.cpus)
        try:
            records.extend(measure(options, bench))
        finally:
            bench.stop_warm_ray()
    print(f"\n{header}\n" + table(records, options.cpus))
    if options.json:
        options.json.write_text(json.dumps({"header": header, "records": records}, indent=1))


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints: Callable[[str], list[int]] = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    parser.add_argument("--trials", type=ints, default=[1000, 10000], help="comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--only", type=lambda s: s.split(","), default=list(CONTENDERS), help=",".join(CONTENDERS)
    )
    parser.add_argument(
        "--cap", type=parse_cap, default={}, help="NAME=N,...: at most N trials for NAME"
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument(
        "--table", type=Path, nargs="+", help="only print the table of runs saved with --json"
    )
    options = parser.parse_args()
    unknown = set(options.only) - set(CONTENDERS)
    if unknown:
        parser.error(f"--only: unknown contender(s) {', '.join(sorted(unknown))}")
    return options


if __name__ == "__main__":
    main()
