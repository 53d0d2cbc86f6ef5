"""hpsearch storage: SQLAlchemy models, the Store (the one write path), read queries.

Knows nothing of Ray, the CLI or the search driver.
"""

from __future__ import annotations

from storage._admin import SchemaStatus, Upgrade, schema_status, upgrade_schema
from storage._artifacts import ArtifactStore, StoredFile, default_location
from storage._engine import DEFAULT_DB, describe, masked, parse_url, to_url
from storage._errors import ArtifactError, NotFoundError, SchemaVersionError, StorageError
from storage._models import SCHEMA_VERSION
from storage._queries import (
    METRIC_COLUMNS,
    TRIAL_COLUMNS,
    find_study,
    iter_metrics,
    load_metrics,
    load_stages,
    load_summary,
    load_trials,
    metrics_wide,
)
from storage._readonly import QueryResult, QueryRows, Reader, check_query, read_only, run_sql
from storage._records import (
    Batch,
    FlagRecord,
    StageRecord,
    StageSummary,
    StudyRecord,
    StudySummary,
    TrialRecord,
)
from storage._schema import revision_id
from storage._store import Store, now
from storage._terms import (
    FINAL_STATUSES,
    AttemptOutcome,
    Mode,
    StageKind,
    StageStatus,
    Status,
)

__all__ = [
    "ArtifactError",
    "ArtifactStore",
    "StoredFile",
    "default_location",
    "AttemptOutcome",
    "DEFAULT_DB",
    "FINAL_STATUSES",
    "SCHEMA_VERSION",
    "Batch",
    "FlagRecord",
    "METRIC_COLUMNS",
    "Mode",
    "NotFoundError",
    "QueryResult",
    "SchemaStatus",
    "QueryRows",
    "Reader",
    "SchemaVersionError",
    "StageKind",
    "StageRecord",
    "StageSummary",
    "StageStatus",
    "Status",
    "Store",
    "StorageError",
    "StudyRecord",
    "StudySummary",
    "TRIAL_COLUMNS",
    "TrialRecord",
    "Upgrade",
    "check_query",
    "describe",
    "now",
    "find_study",
    "iter_metrics",
    "load_metrics",
    "load_stages",
    "load_summary",
    "load_trials",
    "masked",
    "metrics_wide",
    "parse_url",
    "read_only",
    "revision_id",
    "run_sql",
    "schema_status",
    "to_url",
    "upgrade_schema",
]
