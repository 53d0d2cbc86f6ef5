"""Trainables by short name or `package.module:function`, imported lazily."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from hpsearch.errors import TrainableError

Trainable = Callable[..., Iterator[dict[str, float]]]

BUILTIN = {
    "softmax": "trainables.softmax:train",
    "svm": "trainables.svm:train",
    "mlp": "trainables.mlp:train",
    "synthetic": "trainables.synthetic:train",
    "noop": "trainables.noop:train",
}


def qualified(ref: str) -> str:
    """`package.module:function` for a short name or an already qualified reference."""
    return BUILTIN.get(ref, ref)


def resolve(ref: str, search_path: Path | None = None) -> Trainable:
    """Import the trainable; `search_path` (the spec's directory) is tried for user modules."""
    target = qualified(ref)
    if ":" not in target:
        names = ", ".join(sorted(BUILTIN))
        raise TrainableError(
            f"trainable {ref!r}: not a built-in name ({names}) nor 'package.module:function'"
        )
    module_name, _, func_name = target.partition(":")
    if search_path is not None and str(search_path) not in sys.path:
        sys.path.insert(0, str(search_path))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TrainableError(
            f"trainable {ref!r}: module {exc.name!r} not found "
            f"(looked next to the spec and on the Python path)"
        ) from None
    except Exception as exc:  # the user's module raised while importing
        raise TrainableError(
            f"trainable {ref!r}: importing {module_name} raised {type(exc).__name__}: {exc}"
        ) from None
    func = getattr(module, func_name, None)
    if func is None:
        raise TrainableError(f"trainable {ref!r}: module {module_name} has no {func_name!r}")
    return checked(func, ref)


def reference(func: Callable[..., object]) -> str:
    """`module:qualname` of a function object, as the study's `trainable` column keeps it."""
    module = getattr(func, "__module__", None) or "__main__"
    return f"{module}:{getattr(func, '__qualname__', repr(func))}"


CHECKPOINT_DIR = "checkpoint_dir"
RESTORE_DIR = "restore_dir"
_keywords: dict[object, frozenset[str]] = {}


def checkpoint_keywords(func: Trainable) -> frozenset[str]:
    """Which of `checkpoint_dir` and `restore_dir` the trainable accepts (inspected once)."""
    if func not in _keywords:
        params = inspect.signature(func).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            _keywords[func] = frozenset({CHECKPOINT_DIR, RESTORE_DIR})
        else:
            names = {p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
            _keywords[func] = frozenset({CHECKPOINT_DIR, RESTORE_DIR} & names)
    return _keywords[func]


def checked(func: object, ref: str) -> Trainable:
    """The function itself, if it is a generator function (the trainable protocol)."""
    if not inspect.isgeneratorfunction(func):
        name = getattr(func, "__name__", ref.partition(":")[2] or ref)
        raise TrainableError(
            f"trainable {ref!r}: {name} must be a generator function that yields one "
            "dict of metrics per epoch"
        )
    return func
