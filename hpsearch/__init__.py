"""hpsearch: coarse-to-fine hyperparameter random search on Ray, every epoch in SQL."""

from __future__ import annotations

from hpsearch.api import StageResult, Study
from hpsearch.errors import (
    ClusterError,
    DatabaseError,
    HpsearchError,
    SpecError,
    TrainableError,
)
from hpsearch.planner import NoProposalError
from hpsearch.space import Choice, Numeric, Space
from hpsearch.spec import StudySpec, load_spec

__all__ = [
    "Choice",
    "ClusterError",
    "DatabaseError",
    "HpsearchError",
    "NoProposalError",
    "Numeric",
    "Space",
    "SpecError",
    "StageResult",
    "Study",
    "StudySpec",
    "TrainableError",
    "load_spec",
]
