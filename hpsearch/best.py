"""The best model, handed back: the best trial's chosen checkpoint copied out with its
configuration (`hpsearch best --out DIR`, `Study.best_checkpoint`).

Every file is read and checked against its recorded sha256 before anything is written, so a
missing or changed file leaves the output directory as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpsearch.errors import HpsearchError
from hpsearch.space import Space
from storage import BestCheckpoint, load_best_checkpoint, load_stages, read_files

PARAMS_FILE = "params.json"


def export_best(db: str, study: str, out: Path, *, stage: int | None = None) -> BestCheckpoint:
    """Copy the chosen checkpoint of the study's best trial into `out` with `params.json`."""
    from hpsearch.lookup import study_from_arg

    record = study_from_arg(db, study)
    best = load_best_checkpoint(db, record, load_stages(db, record.name), stage)
    _check_out(out)
    content = read_files(best.files)
    content[PARAMS_FILE] = (json.dumps(describe(best), indent=2) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    for name, data in content.items():
        (out / name).write_bytes(data)
    return best


def describe(best: BestCheckpoint) -> dict[str, Any]:
    """What `params.json` holds: the configuration (fixed values included) and its origin."""
    sampled = Space.from_dict(best.stage.ranges).typed(best.params)
    return {
        "study": best.study.name,
        "trainable": best.study.trainable,
        "stage": best.stage.stage_id,
        "stage_kind": best.stage.kind,
        "trial": best.trial,
        "trial_id": best.trial_id,
        "epoch": best.epoch,
        "metric": best.study.metric,
        "mode": best.study.mode,
        "value": best.value,
        "params": {**best.stage.fixed, **sampled},
        "files": sorted(f.name for f in best.files),
    }


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise HpsearchError(f"--out {out}: is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise HpsearchError(f"--out {out}: is not empty: give a new or empty directory")


__all__ = ["PARAMS_FILE", "describe", "export_best"]
