"""A small real study for the reading commands: a coarse and a fine stage of the numpy MLP.

Built with the stage driver and the in-process executor (no Ray): seconds, real rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpsearch.driver import begin, run_stage, start_or_resume
from hpsearch.planner import StageRequest, sample
from hpsearch.registry import qualified
from hpsearch.runtime.executor import InProcessExecutor, Workload
from hpsearch.space import Space
from hpsearch.spec import load_spec
from storage import StageKind, Store
from tests.conftest import session_pg_database

SPEC = """
name = "digits-mlp"
trainable = "mlp"
metric = "val_acc"
mode = "max"
seed = 1  # trial 1 completes: the README query on trial 1 has rows

[fixed]
data = "digits"
hidden = 24

[space]
lr     = { type = "loguniform", low = 1e-4, high = 3.0 }
reg    = { type = "loguniform", low = 1e-5, high = 1e-1 }
batch  = { type = "lograndint", low = 64, high = 256 }
update = { type = "choice", values = ["sgd", "adam", "bogus"] }

[coarse]
trials = 12
epochs = 2
"""

FINE_RANGES = {
    "lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1},
    "reg": {"type": "loguniform", "low": 1e-5, "high": 1e-2},
    "batch": {"type": "lograndint", "low": 64, "high": 256},
    "update": {"type": "choice", "values": ["adam"]},
}


_BUILT: dict[str, str] = {}


def shared_study_db(factory: Any, backend: str = "sqlite") -> str:
    """One study database per backend and test session (built on first use; tests only read it).

    `backend` "sqlite" gives the path of `study.db` next to `study.toml`; "postgresql" a URL of
    a new database on the test server (dropped when the session ends).
    """
    if backend not in _BUILT:
        directory = factory.mktemp(f"study-{backend}")
        db = str(directory / "study.db") if backend == "sqlite" else session_pg_database()
        _BUILT[backend] = build_study_db(directory, db)
    return _BUILT[backend]


def build_study_db(directory: Path, db: str | None = None) -> str:
    """A finished coarse stage (12 x 2) and fine stage (4 x 4) in `db` (`directory/study.db`)."""
    (directory / "study.toml").write_text(SPEC)
    spec = load_spec(directory / "study.toml")
    db = db or str(directory / "study.db")
    store = Store(db)
    executor = InProcessExecutor(Workload(qualified(spec.trainable), spec.metric, directory))
    coarse = StageRequest(StageKind.COARSE, spec.coarse.trials, spec.coarse.epochs)
    _, first, _ = start_or_resume(store, spec, coarse)
    run_stage(store, spec, first, executor)
    store.finish_stage(first.stage_id)
    fine_ranges = Space.from_dict(FINE_RANGES)
    fine = sample(StageKind.FINE, fine_ranges, 4, 4, seed=1, parent_stage_id=first.stage_id)
    _, second, _ = begin(store, spec, fine)
    run_stage(store, spec, second, executor)
    store.finish_stage(second.stage_id)
    store.close()
    return db
