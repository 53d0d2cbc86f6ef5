"""The Python API: a coarse and a fine stage from a function object, on Ray and in-process."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import hpsearch
from hpsearch import HpsearchError, NoProposalError, SpecError, Study, TrainableError
from storage import load_trials
from tests.conftest import query, run_cli

# A notebook cell: its functions live in `__main__`, which a Ray worker cannot import, so the
# function must travel by value.
NOTEBOOK_CELL = """
import math

def train(params, *, epochs, seed):
    # the best lr is beyond the range's high end: the coarse stage flags it
    for epoch in range(1, epochs + 1):
        score = math.log10(params["lr"]) - (0.0 if params["opt"] == "adam" else 0.5)
        yield {"val_acc": score * epoch / epochs, "seen_seed": float(seed)}
"""


def notebook_function() -> Any:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(NOTEBOOK_CELL, namespace)
    return namespace["train"]


def spec_dict(trainable: Any, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "trainable": trainable,
        "metric": "val_acc",
        "mode": "max",
        "seed": 3,
        "space": {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
            "opt": {"type": "choice", "values": ["sgd", "adam"]},
        },
        "coarse": {"trials": 20, "epochs": 2},
        "fine": {"trials": 6, "epochs": 3, "top": 5},
    }


def shown_stage(db: Path, name: str, stage_id: int, cwd: Path) -> dict[str, Any]:
    shown = run_cli("show", name, "--db", str(db), "--json", cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    stages = {s["id"]: s for s in json.loads(shown.stdout)["stages"]}
    return stages[stage_id]


def test_coarse_and_fine_on_ray_from_a_notebook_function(tmp_path: Path, ray_address: str) -> None:
    db = tmp_path / "results.db"
    train = notebook_function()
    assert train.__module__ == "__main__"
    study = hpsearch.Study.from_spec(spec_dict(train, "nb"), db=db)

    coarse = study.coarse(address=ray_address)
    assert (coarse.kind, coarse.trials, coarse.epochs, coarse.resumed) == ("coarse", 20, 2, False)
    assert coarse.counts == {"completed": 20}
    assert query(db, "SELECT name, trainable, metric, mode FROM studies") == [
        ("nb", "__main__:train", "val_acc", "max")
    ]
    assert query(db, "SELECT count(*), count(DISTINCT node_id) FROM trials") == [(20, 1)]
    assert query(db, "SELECT count(*) FROM metrics") == [(20 * 2 * 2,)]
    # every trial ran with its own stored seed, on a worker
    assert query(
        db,
        "SELECT count(*) FROM metrics m JOIN trials t USING (trial_id) "
        "WHERE m.name = 'seen_seed' AND m.value = t.seed",
    ) == [(20 * 2,)]

    shown = shown_stage(db, "nb", coarse.stage_id, tmp_path)
    assert [f["param"] for f in coarse.flags] == ["lr"] and coarse.flags[0]["side"] == "high"
    assert coarse.flags == shown["flags"]
    assert coarse.proposal == shown["proposal"] and coarse.reasons == shown["reasons"]
    assert coarse.best == shown["best"] and coarse.counts == shown["counts"]
    assert coarse.proposal is not None and coarse.proposal["lr"]["high"] > 1.0

    fine = study.fine(address=ray_address)
    assert (fine.kind, fine.parent, fine.epochs) == ("fine", coarse.stage_id, 3)
    # the default fine stage, ASHA with a rung at epoch 1, drew trials until 6 x 3 were spent:
    # more than 6 unless none was stopped (each of the 6 better than all before it at epoch 1)
    assert fine.trials > 6 or fine.counts == {"completed": 6}
    assert set(fine.counts) <= {"completed", "stopped"}
    rerun = query(db, f"SELECT count(*) FROM trials WHERE stage_id = {fine.stage_id}")
    assert rerun == [(fine.trials,)] == [(sum(fine.counts.values()),)]
    fine_shown = shown_stage(db, "nb", fine.stage_id, tmp_path)
    assert fine.flags == fine_shown["flags"] and fine.proposal == fine_shown["proposal"]
    assert fine.best == fine_shown["best"]
    # the coarse stage's best 3 configurations ran again first, for the fine epochs
    fine_first = study.trials(stage=fine.stage_id).head(3)
    assert [round(v, 12) for v in fine_first["lr"]] == [
        round(t.params["lr"], 12) for t in coarse.top[:3]
    ]

    pd.testing.assert_frame_equal(study.trials(), load_trials(str(db), "nb"))


def train(params: dict[str, Any], *, epochs: int, seed: int):  # type: ignore[no-untyped-def]
    """A trainable defined in this module (run in-process below)."""
    for epoch in range(1, epochs + 1):
        if params["opt"] == "sgd" and params["lr"] > 0.5:
            raise FloatingPointError("lr too high for sgd")
        yield {"val_acc": -((math.log10(params["lr"]) + 2) ** 2) + epoch}


def test_dict_spec_runs_in_process_and_reports_progress(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    study = Study.from_spec(spec_dict(train, "local"), db=str(db))
    reports: list[tuple[int, int, bool]] = []
    coarse = study.coarse(
        trials=12,
        executor="local",
        on_progress=lambda p: reports.append((p.done, p.total, p.resumed)),
    )
    assert reports[0] == (0, 12, False) and reports[-1] == (12, 12, False)
    assert sum(coarse.counts.values()) == 12 and coarse.counts.get("completed", 0) >= 1
    assert query(db, "SELECT trainable FROM studies") == [(f"{__name__}:train",)]
    assert coarse.best is not None
    best = coarse.best["value"]
    assert best == max(study.trials(status="completed")["best_value"])
    assert coarse.top[0].best_value == best

    fine = study.fine(trials=4, epochs=2, top=3, executor="local")
    assert fine.parent == coarse.stage_id and fine.trials > 4  # ASHA spends 4 x 2 epochs
    assert query(db, "SELECT kind, parent_stage_id FROM stages ORDER BY stage_id") == [
        ("coarse", None),
        ("fine", coarse.stage_id),
    ]


def test_bad_requests_are_hpsearch_errors_and_change_nothing(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with pytest.raises(SpecError, match=r"^spec: space: missing table$"):
        Study.from_spec({k: v for k, v in spec_dict(train, "x").items() if k != "space"}, db=db)

    def not_a_generator(params: dict[str, Any], *, epochs: int, seed: int) -> list[Any]:
        return []

    with pytest.raises(TrainableError, match="must be a generator function"):
        Study.from_spec(spec_dict(not_a_generator, "x"), db=db)

    study = Study.from_spec(spec_dict(train, "x"), db=db)
    with pytest.raises(HpsearchError, match=r"^trials: must be >= 1, got 0$"):
        study.coarse(trials=0, executor="local")
    with pytest.raises(
        NoProposalError, match=r"study 'x': no stages yet in .* run `hpsearch coarse"
    ):
        study.fine(executor="local")
    assert query(db, "SELECT count(*) FROM stages") == [(0,)]
    study.coarse(trials=2, epochs=1, executor="local")
    with pytest.raises(NoProposalError, match=r"^--from-stage 7: no such stage in "):
        study.fine(from_stage=7, executor="local")
    with pytest.raises(HpsearchError, match=r"^executor: must be 'ray' or 'local', got 'gpu'$"):
        study.fine(executor="gpu")  # type: ignore[arg-type]
    assert query(db, "SELECT count(*) FROM stages") == [(1,)]
