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

SPEC = """
name = "digits-mlp"
trainable = "mlp"
metric = "val_acc"
mode = "max"
seed = 0

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


_BUILT: dict[str, Path] = {}


def shared_study_db(factory: Any) -> Path:
    """One study database per test session (built on first use; tests only read it)."""
    if "db" not in _BUILT:
        _BUILT["db"] = build_study_db(factory.mktemp("study"))
    return _BUILT["db"]


def build_study_db(directory: Path) -> Path:
    """`directory/study.db` with a finished coarse stage (12 x 2) and fine stage (4 x 4)."""
    (directory / "study.toml").write_text(SPEC)
    spec = load_spec(directory / "study.toml")
    db = directory / "study.db"
    store = Store(str(db))
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
