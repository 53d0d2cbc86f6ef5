"""hpsearch storage: SQLAlchemy models, the Store (the one write path), read queries.

Knows nothing of Ray, the CLI or the search driver.
"""

from __future__ import annotations

from storage._artifacts import ArtifactStore, StoredFile, default_location
from storage._engine import DEFAULT_DB, describe, to_url
from storage._errors import ArtifactError, SchemaVersionError, StorageError
from storage._models import SCHEMA_VERSION
from storage._queries import (
    METRIC_COLUMNS,
    TRIAL_COLUMNS,
    find_study,
    load_metrics,
    load_stages,
    load_trials,
    metrics_wide,
)
from storage._readonly import QueryResult, read_only, run_sql
from storage._records import (
    Batch,
    FlagRecord,
    StageRecord,
    StudyRecord,
    TrialRecord,
)
from storage._store import Store, now
from storage._terms import FINAL_STATUSES, Mode, StageKind, StageStatus, Status

__all__ = [
    "ArtifactError",
    "ArtifactStore",
    "StoredFile",
    "default_location",
    "DEFAULT_DB",
    "FINAL_STATUSES",
    "SCHEMA_VERSION",
    "Batch",
    "FlagRecord",
    "METRIC_COLUMNS",
    "Mode",
    "QueryResult",
    "SchemaVersionError",
    "StageKind",
    "StageRecord",
    "StageStatus",
    "Status",
    "Store",
    "StorageError",
    "StudyRecord",
    "TRIAL_COLUMNS",
    "TrialRecord",
    "describe",
    "now",
    "find_study",
    "load_metrics",
    "load_stages",
    "load_trials",
    "metrics_wide",
    "read_only",
    "run_sql",
    "to_url",
]
