"""hpsearch: coarse-to-fine hyperparameter random search on Ray, every epoch in SQL."""

from __future__ import annotations

from hpsearch.errors import ClusterError, HpsearchError, SpecError, TrainableError
from hpsearch.space import Choice, Numeric, Space
from hpsearch.spec import StudySpec, load_spec

__all__ = [
    "Choice",
    "ClusterError",
    "HpsearchError",
    "Numeric",
    "Space",
    "SpecError",
    "StudySpec",
    "TrainableError",
    "load_spec",
]
