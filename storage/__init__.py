"""hpsearch storage: SQLAlchemy models, the Store (the one write path), read queries.

Knows nothing of Ray, the CLI or the search driver. Names load with their module on first use
(`from storage import Status` does not import SQLAlchemy), so the CLI and Ray workers start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers (tests/test_layers.py)
    from storage._admin import (
        SchemaStatus as SchemaStatus,
        Upgrade as Upgrade,
        schema_status as schema_status,
        upgrade_schema as upgrade_schema,
    )
    from storage._artifacts import (
        ArtifactStore as ArtifactStore,
        StoredFile as StoredFile,
        default_location as default_location,
    )
    from storage._engine import (
        describe as describe,
        parse_url as parse_url,
        to_url as to_url,
    )
    from storage._errors import (
        ArtifactError as ArtifactError,
        NotFoundError as NotFoundError,
        SchemaVersionError as SchemaVersionError,
        StorageError as StorageError,
        masked as masked,
    )
    from storage._models import SCHEMA_VERSION as SCHEMA_VERSION
    from storage._queries import (
        find_study as find_study,
        iter_metrics as iter_metrics,
        load_metrics as load_metrics,
        load_stages as load_stages,
        load_summary as load_summary,
        load_trials as load_trials,
        metrics_wide as metrics_wide,
    )
    from storage._readonly import (
        QueryRows as QueryRows,
        Reader as Reader,
        check_query as check_query,
        read_only as read_only,
        run_sql as run_sql,
    )
    from storage._records import (
        METRIC_COLUMNS as METRIC_COLUMNS,
        TRIAL_COLUMNS as TRIAL_COLUMNS,
        Batch as Batch,
        FlagRecord as FlagRecord,
        ParamTrend as ParamTrend,
        QueryResult as QueryResult,
        StageRecord as StageRecord,
        StageSummary as StageSummary,
        StageTally as StageTally,
        StudyRecord as StudyRecord,
        StudySummary as StudySummary,
        TrialRecord as TrialRecord,
    )
    from storage._schema import revision_id as revision_id
    from storage._store import Store as Store, now as now
    from storage._terms import (
        DEFAULT_DB as DEFAULT_DB,
        FINAL_STATUSES as FINAL_STATUSES,
        AttemptOutcome as AttemptOutcome,
        Mode as Mode,
        StageKind as StageKind,
        StageStatus as StageStatus,
        Status as Status,
    )

_MODULE_OF = {
    "SchemaStatus": "_admin",
    "Upgrade": "_admin",
    "schema_status": "_admin",
    "upgrade_schema": "_admin",
    "ArtifactStore": "_artifacts",
    "StoredFile": "_artifacts",
    "default_location": "_artifacts",
    "describe": "_engine",
    "masked": "_errors",
    "parse_url": "_engine",
    "to_url": "_engine",
    "ArtifactError": "_errors",
    "NotFoundError": "_errors",
    "SchemaVersionError": "_errors",
    "StorageError": "_errors",
    "SCHEMA_VERSION": "_models",
    "METRIC_COLUMNS": "_records",
    "TRIAL_COLUMNS": "_records",
    "find_study": "_queries",
    "iter_metrics": "_queries",
    "load_metrics": "_queries",
    "load_stages": "_queries",
    "load_summary": "_queries",
    "load_trials": "_queries",
    "metrics_wide": "_queries",
    "QueryResult": "_records",
    "QueryRows": "_readonly",
    "Reader": "_readonly",
    "check_query": "_readonly",
    "read_only": "_readonly",
    "run_sql": "_readonly",
    "Batch": "_records",
    "FlagRecord": "_records",
    "ParamTrend": "_records",
    "StageRecord": "_records",
    "StageSummary": "_records",
    "StageTally": "_records",
    "StudyRecord": "_records",
    "StudySummary": "_records",
    "TrialRecord": "_records",
    "revision_id": "_schema",
    "Store": "_store",
    "now": "_store",
    "AttemptOutcome": "_terms",
    "DEFAULT_DB": "_terms",
    "FINAL_STATUSES": "_terms",
    "Mode": "_terms",
    "StageKind": "_terms",
    "StageStatus": "_terms",
    "Status": "_terms",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'storage' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"storage.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
