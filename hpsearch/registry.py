"""Trainables (and their `predict`) by short name or `package.module:function`, imported lazily."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from hpsearch.errors import TrainableError

Trainable = Callable[..., Iterator[dict[str, float]]]
Predict = Callable[..., object]  # (params, *, checkpoint_dir, split) -> (probabilities, labels)

BUILTIN = {
    "softmax": "trainables.softmax:train",
    "svm": "trainables.svm:train",
    "mlp": "trainables.mlp:train",
    "synthetic": "trainables.synthetic:train",
    "noop": "trainables.noop:train",
}


# the built-in models' `predict(params, checkpoint_dir=..., split=...)`, by their trainable
BUILTIN_PREDICT = {
    "trainables.softmax:train": "trainables.softmax:predict",
    "trainables.svm:train": "trainables.svm:predict",
    "trainables.mlp:train": "trainables.mlp:predict",
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
    func = _imported("trainable", ref, target, search_path)
    if func is None:
        raise TrainableError(f"trainable {ref!r}: module {module_name} has no {func_name!r}")
    return checked(func, ref)


def default_predict(trainable: str) -> str | None:
    """The built-in trainable's own `predict`, or None for any other trainable."""
    return BUILTIN_PREDICT.get(qualified(trainable))


def resolve_predict(ref: str, search_path: Path | None = None) -> Predict:
    """Import the spec's `predict` and check it takes `checkpoint_dir` and `split` keywords."""
    module_name, _, func_name = ref.partition(":")
    hint = "fix `predict` at the top of the spec"
    if not module_name or not func_name:
        raise TrainableError(f"predict {ref!r}: not 'package.module:function': {hint}")
    func = _imported("predict", ref, ref, search_path, f": {hint}")
    if not callable(func):
        raise TrainableError(f"predict {ref!r}: module {module_name} has no function {func_name!r}")
    return checked_predict(func, ref)


def _imported(
    what: str, ref: str, target: str, search_path: Path | None, hint: str = ""
) -> object | None:
    """The attribute named by `target` ('package.module:name'), the spec's directory first on
    the path; None when the module has no such name. An import failure is one line."""
    module_name, _, name = target.partition(":")
    if search_path is not None and str(search_path) not in sys.path:
        sys.path.insert(0, str(search_path))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TrainableError(
            f"{what} {ref!r}: module {exc.name!r} not found "
            f"(looked next to the spec and on the Python path){hint}"
        ) from None
    except Exception as exc:  # the user's module raised while importing
        raise TrainableError(
            f"{what} {ref!r}: importing {module_name} raised {type(exc).__name__}: {exc}"
        ) from None
    return getattr(module, name, None)


def checked_predict(func: Callable[..., object], ref: str) -> Predict:
    """The function itself, if it accepts `predict(params, checkpoint_dir=..., split=...)`."""
    try:
        inspect.signature(func).bind({}, checkpoint_dir="", split="val")
    except TypeError:
        raise TrainableError(
            f"predict {ref!r}: must accept predict(params, *, checkpoint_dir, split) and return "
            "(probabilities, labels)"
        ) from None
    except ValueError:  # no signature to inspect (a builtin): trust it
        pass
    return func


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
