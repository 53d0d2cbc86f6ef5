"""The dashboard's JSON documents, read through storage's read-only path (never Ray, never a
writing connection). The study document has the shape of `hpsearch show --json`."""

from __future__ import annotations

import base64
import threading
from typing import Any

from hpsearch.summary import study_document
from storage import StudyRecord, load_summary, read_only
from storage._dashboard import (
    ParamFilter,
    Points,
    curves,
    live_update,
    points,
    studies_overview,
    study_by_name,
    study_stages,
    top_trial_ids,
    trials_page,
)
from storage._readonly import Reader


def studies(db: str) -> list[dict[str, Any]]:
    with read_only(db) as reader:
        return studies_overview(reader)


def study(db: str, name: str) -> dict[str, Any]:
    """{"study", "metric", "mode", "stages": [...]}: the document `hpsearch show --json` prints."""
    return study_document(load_summary(db, name))


def live(db: str, name: str, stage_id: int, after: tuple[str, int] | None) -> dict[str, Any]:
    with read_only(db) as reader:
        return live_update(reader, study_by_name(reader, name), stage_id, after)


def trials(db: str, name: str, **query: Any) -> dict[str, Any]:
    with read_only(db) as reader:
        page = trials_page(reader, study_by_name(reader, name), **query)
    return {"total": page.total, "columns": page.columns, "rows": page.rows}


def scatter_points(db: str, name: str) -> dict[str, Any]:
    """Completed trials columnar, with each stage's kind, ranges and flags (for the plots)."""
    with read_only(db) as reader:
        record = study_by_name(reader, name)
        stage_records = study_stages(reader, record)
        names = list(dict.fromkeys(k for s in stage_records for k in s.ranges))
        found = _cached_points(db, reader, record, names)
    stages = [
        {key: s[key] for key in ("id", "kind", "parent", "ranges", "flags", "best")}
        for s in study(db, name)["stages"]
    ]
    dtypes = {"trial_id": "<i4", "stage_id": "<i4", "trial": "<i4", "value": "<f8"}
    return {
        "metric": record.metric,
        "mode": record.mode,
        "stages": stages,
        "count": len(found),
        "columns": {k: _binary(found.columns[k], t) for k, t in dtypes.items()},
        "params": {n: _binary(v, "<f8") for n, v in found.params.items()},
        "categories": {n: list(labels) for n, labels in found.labels.items()},
    }


# Completed trials per (database, study), grown by what finished since: the plots of a study
# of 100,000 trials read it once, then only what is new.
_POINTS: dict[tuple[str, str], Points] = {}
_POINTS_LOCK = threading.Lock()


def _cached_points(db: str, reader: Reader, study: StudyRecord, names: list[str]) -> Points:
    with _POINTS_LOCK:
        found = points(reader, study, names, _POINTS.get((db, study.name)))
        _POINTS[(db, study.name)] = found
        return found


def warm(db: str) -> None:
    """Read every study's completed trials once (the server does it at start, in a thread)."""
    for summary in studies(db):
        scatter_points(db, summary["name"])


def _binary(values: Any, dtype: str) -> str:
    """A numpy column as base64 of little-endian `dtype` (NaN = missing): no Python object
    per number on the server, a typed array in the browser."""
    return base64.b64encode(values.astype(dtype).tobytes()).decode("ascii")


def learning_curves(db: str, name: str, top: int, picked: list[int]) -> dict[str, Any]:
    with read_only(db) as reader:
        record = study_by_name(reader, name)
        ids = top_trial_ids(reader, record, top)
        ids += [i for i in picked if i not in ids]
        found = curves(reader, record, ids)
    return {"metric": record.metric, "mode": record.mode, "picked": picked, "trials": found}


def first_layer_png(db: str, name: str, trial_id: int) -> bytes:
    """The trial's first-layer grid (its latest kept checkpoint) as a PNG, what `hpsearch plot
    --trial ID` draws; HpsearchError or StorageError when it has none."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from hpsearch import plots
    from storage import find_study

    figure = plots.first_layer_figure(
        plots.first_layer_panels(db, find_study(db, name), trial_id=trial_id)
    )
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=80, bbox_inches="tight")
    return png.getvalue()


__all__ = [
    "ParamFilter",
    "first_layer_png",
    "learning_curves",
    "live",
    "scatter_points",
    "studies",
    "study",
    "trials",
    "warm",
]
