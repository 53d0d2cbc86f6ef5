"""hpsearch: coarse-to-fine hyperparameter random search on Ray, every epoch in SQL.

The Python API: `hpsearch.Study` runs stages as the CLI does. Names load with their module on
first use, so `import hpsearch` (and the CLI's start) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers (tests/test_layers.py)
    from hpsearch.api import StageResult as StageResult, Study as Study
    from hpsearch.errors import (
        ClusterError as ClusterError,
        ClusterLost as ClusterLost,
        DatabaseError as DatabaseError,
        HpsearchError as HpsearchError,
        SpecError as SpecError,
        TrainableError as TrainableError,
    )
    from hpsearch.planner import NoProposalError as NoProposalError
    from hpsearch.space import Choice as Choice, Numeric as Numeric, Space as Space
    from hpsearch.spec import StudySpec as StudySpec, load_spec as load_spec

_MODULE_OF = {
    "StageResult": "api",
    "Study": "api",
    "ClusterError": "errors",
    "ClusterLost": "errors",
    "DatabaseError": "errors",
    "HpsearchError": "errors",
    "SpecError": "errors",
    "TrainableError": "errors",
    "NoProposalError": "planner",
    "Choice": "space",
    "Numeric": "space",
    "Space": "space",
    "StudySpec": "spec",
    "load_spec": "spec",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hpsearch.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
