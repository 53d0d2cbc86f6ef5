"""Study specs: parse a TOML file and validate every key, naming the file, key and rule."""

from __future__ import annotations

import datetime
import math
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsearch.asha import BUDGETS, SCHEDULES, Schedule
from hpsearch.errors import SpecError
from hpsearch.registry import (
    Predict,
    Trainable,
    checked,
    checked_predict,
    default_predict,
    reference,
)
from hpsearch.space import NUMERIC_TYPES, TYPES, Choice, Dimension, Numeric, Space
from storage import Mode

TOP_KEYS = {
    "name",
    "trainable",
    "predict",
    "metric",
    "mode",
    "seed",
    "fixed",
    "space",
    "coarse",
    "fine",
    "checkpoints",
}
NUMERIC_KEYS = {"type", "low", "high", "min", "max"}
CHOICE_KEYS = {"type", "values"}


@dataclass(frozen=True)
class StageSettings:
    trials: int
    epochs: int
    schedule: Schedule = Schedule()  # `schedule`, `eta`, `grace`, `budget`: ASHA
    trial_timeout: float | None = None  # seconds a trial may run; None: no limit


@dataclass(frozen=True)
class FineSettings(StageSettings):
    # ASHA, drawing trials until trials x epochs are spent: level with or better than every
    # rival at an equal epoch budget in BENCHMARKS.md, where running every trial out was not
    schedule: Schedule = Schedule("asha")
    top: int = 10
    edge: float = 0.1  # width of the outer band, as a fraction of the range, that flags an edge
    keep: int = 3  # the parent's best configurations, re-run first in a fine stage
    pad: float = 0.25  # proposal padding (fraction of the top trials' span; of the old width
    #                    for a flagged side that moves outward)


@dataclass(frozen=True)
class CheckpointSettings:
    """`[checkpoints]`: the best `keep_trials` trials of a stage keep their best `keep_epochs`
    epochs plus their last; `keep_trials = 0` turns checkpointing off."""

    keep_trials: int = 10
    keep_epochs: int = 1


@dataclass(frozen=True)
class StudySpec:
    path: Path
    name: str
    trainable: str
    metric: str
    mode: Mode
    space: Space
    coarse: StageSettings
    fine: FineSettings
    fixed: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    checkpoints: CheckpointSettings = field(default_factory=CheckpointSettings)
    # the trainable itself when the spec (a dict) gave a function object; `trainable` then
    # holds its `module:qualname`, for the record only (the function is never imported by name)
    function: Trainable | None = field(default=None, compare=False, repr=False)
    # `module:function` of predict(params, checkpoint_dir=..., split=...) for ensembles; the
    # built-in trainables' own by default, None when the spec names none
    predict: str | None = None
    predict_function: Predict | None = field(default=None, compare=False, repr=False)

    @property
    def directory(self) -> Path:
        """Where the spec lives: a trainable module next to it can be imported from here."""
        return self.path.parent

    def schedule(self, kind: str) -> Schedule:
        """The schedule of a stage of this kind (an ensemble stage runs every trial out)."""
        if kind == "coarse":
            return self.coarse.schedule
        return self.fine.schedule if kind == "fine" else Schedule()


def load_spec(path: str | Path) -> StudySpec:
    path = Path(path)
    return parse_spec(_read_toml(path), path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory, not a spec file") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc.strerror})") from None
    if not raw.strip():
        raise SpecError(f"{path}: spec file is empty: see examples/digits.toml for the format")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (is it a TOML spec?)") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: TOML syntax error: {exc}") from None


class _Checker:
    """Reads typed values out of the TOML tables, raising SpecError with file and key."""

    def __init__(self, path: Path) -> None:
        self.file = path.name

    def fail(self, key: str, rule: str) -> SpecError:
        return SpecError(f"{self.file}: {key}: {rule}")

    def table(self, data: dict[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
        if key not in data:
            if required:
                raise self.fail(key, "missing table")
            return {}
        value = data[key]
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, got {value!r}")
        return value

    def no_unknown(self, data: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(
                    f"{prefix}{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
                )

    def string(self, data: dict[str, Any], key: str, prefix: str = "") -> str:
        if key not in data:
            raise self.fail(f"{prefix}{key}", "missing key")
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{prefix}{key}", f"must be a non-empty string, got {value!r}")
        return value

    def positive_int(self, data: dict[str, Any], key: str, prefix: str, default: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{prefix}{key}", f"must be an integer, got {value!r}")
        if value <= 0:
            raise self.fail(f"{prefix}{key}", f"must be > 0, got {value}")
        return value

    def number(self, data: dict[str, Any], key: str, prefix: str) -> float | None:
        if key not in data:
            return None
        value = data[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(f"{prefix}{key}", f"must be a finite number, got {value!r}")
        return value


def parse_spec(data: dict[str, Any], path: Path) -> StudySpec:
    """A validated spec from the TOML's tables (or a dict with the same keys; there the
    trainable may also be a generator function object)."""
    check = _Checker(path)
    check.no_unknown(data, TOP_KEYS)
    mode = check.string(data, "mode") if "mode" in data else Mode.MAX
    if mode not in tuple(Mode):
        raise check.fail("mode", f"must be '{Mode.MIN}' or '{Mode.MAX}', got {mode!r}")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise check.fail("seed", f"must be an integer >= 0, got {seed!r}")
    space = _parse_space(check, check.table(data, "space"))
    fixed = check.table(data, "fixed", required=False)
    _check_json(check, "fixed", fixed)
    for name in fixed:
        if name in space.dimensions:
            raise check.fail(f"fixed.{name}", "is also in [space]: keep it in one of the two")
    function = None
    if callable(data.get("trainable")):
        function = checked(data["trainable"], reference(data["trainable"]))
        data = {**data, "trainable": reference(function)}
    predict, predict_function = _parse_predict(check, data)
    return StudySpec(
        path=path,
        name=check.string(data, "name"),
        trainable=check.string(data, "trainable"),
        metric=check.string(data, "metric"),
        mode=Mode(mode),
        space=space,
        coarse=_parse_coarse(check, check.table(data, "coarse", required=False)),
        fine=_parse_fine(check, check.table(data, "fine", required=False)),
        fixed=dict(fixed),
        seed=seed,
        checkpoints=_parse_checkpoints(check, check.table(data, "checkpoints", required=False)),
        function=function,
        predict=predict,
        predict_function=predict_function,
    )


def _parse_predict(check: _Checker, data: dict[str, Any]) -> tuple[str | None, Predict | None]:
    """`predict = "module:function"` (a function object in a dict spec); imported when used."""
    if "predict" not in data:
        trainable = data.get("trainable")
        return (default_predict(trainable) if isinstance(trainable, str) else None), None
    value = data["predict"]
    if callable(value):
        return reference(value), checked_predict(value, reference(value))
    text = check.string(data, "predict")
    module, _, function = text.partition(":")
    if not module.strip() or not function.strip():
        raise check.fail("predict", f"must be 'package.module:function', got {text!r}")
    return text, None


def _parse_checkpoints(check: _Checker, data: dict[str, Any]) -> CheckpointSettings:
    check.no_unknown(data, {"keep_trials", "keep_epochs"}, "checkpoints.")
    keep_trials = data.get("keep_trials", 10)
    if isinstance(keep_trials, bool) or not isinstance(keep_trials, int) or keep_trials < 0:
        raise check.fail(
            "checkpoints.keep_trials", f"must be an integer >= 0 (0: off), got {keep_trials!r}"
        )
    return CheckpointSettings(
        keep_trials, check.positive_int(data, "keep_epochs", "checkpoints.", 1)
    )


def _parse_coarse(check: _Checker, data: dict[str, Any]) -> StageSettings:
    check.no_unknown(data, {"trials", "epochs", "trial_timeout", *SCHEDULE_KEYS}, "coarse.")
    return StageSettings(
        trials=check.positive_int(data, "trials", "coarse.", 50),
        epochs=check.positive_int(data, "epochs", "coarse.", 3),
        schedule=_schedule(check, data, "coarse.", "none"),
        trial_timeout=_trial_timeout(check, data, "coarse."),
    )


SCHEDULE_KEYS = {"schedule", "eta", "grace", "budget"}


def _schedule(check: _Checker, data: dict[str, Any], prefix: str, default: str) -> Schedule:
    kind = data.get("schedule", default)
    if kind not in SCHEDULES:
        raise check.fail(f"{prefix}schedule", f"must be 'asha' or 'none', got {kind!r}")
    eta = check.positive_int(data, "eta", prefix, 3)
    if eta < 2:
        raise check.fail(f"{prefix}eta", f"must be >= 2 (keep the top 1/eta), got {eta}")
    budget = data.get("budget", "epochs")
    if budget not in BUDGETS:
        raise check.fail(
            f"{prefix}budget",
            f"must be 'epochs' (draw trials until trials x epochs are spent) or 'trials' "
            f"(run exactly `trials`), got {budget!r}",
        )
    return Schedule(kind, eta, check.positive_int(data, "grace", prefix, 1), budget)


def _trial_timeout(check: _Checker, data: dict[str, Any], prefix: str) -> float | None:
    seconds = check.number(data, "trial_timeout", prefix)
    if seconds is not None and seconds <= 0:
        raise check.fail(f"{prefix}trial_timeout", f"must be > 0 (seconds), got {seconds}")
    return seconds


def _parse_fine(check: _Checker, data: dict[str, Any]) -> FineSettings:
    keys = {"trials", "epochs", "top", "edge", "pad", "keep", "trial_timeout", *SCHEDULE_KEYS}
    check.no_unknown(data, keys, "fine.")
    edge = check.number(data, "edge", "fine.")
    if edge is not None and not 0 < edge < 0.5:
        raise check.fail("fine.edge", f"must be between 0 and 0.5 (a fraction), got {edge}")
    pad = check.number(data, "pad", "fine.")
    if pad is not None and not 0 <= pad <= 2:
        raise check.fail("fine.pad", f"must be between 0 and 2 (a fraction), got {pad}")
    return FineSettings(
        trials=check.positive_int(data, "trials", "fine.", 20),
        epochs=check.positive_int(data, "epochs", "fine.", 20),
        schedule=_schedule(check, data, "fine.", "asha"),
        top=check.positive_int(data, "top", "fine.", 10),
        edge=0.1 if edge is None else edge,
        pad=0.25 if pad is None else pad,
        keep=_keep(check, data),
        trial_timeout=_trial_timeout(check, data, "fine."),
    )


def _keep(check: _Checker, data: dict[str, Any]) -> int:
    keep = data.get("keep", 3)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise check.fail("fine.keep", f"must be an integer >= 0, got {keep!r}")
    return keep


def _parse_space(check: _Checker, data: dict[str, Any]) -> Space:
    if not data:
        raise check.fail("space", "needs at least one parameter")
    dims: dict[str, Dimension] = {}
    for name, entry in data.items():
        key = f"space.{name}"
        if not isinstance(entry, dict):
            raise check.fail(
                key, f'must be a table like {{ type = "uniform", ... }}, got {entry!r}'
            )
        kind = entry.get("type")
        if kind not in TYPES:
            raise check.fail(f"{key}.type", f"must be one of {', '.join(TYPES)}, got {kind!r}")
        dims[name] = _choice(check, key, entry) if kind == "choice" else _numeric(check, key, entry)
    return Space(dims)


def _check_json(check: _Checker, key: str, value: Any) -> None:
    """`[fixed]` is stored as JSON: no dates or times, no NaN or infinity."""
    if isinstance(value, dict):
        for name, item in value.items():
            _check_json(check, f"{key}.{name}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(check, f"{key}[{i}]", item)
    elif isinstance(value, datetime.date | datetime.time):
        raise check.fail(
            key, f"dates and times cannot be stored: write it as a string, got {value}"
        )
    elif isinstance(value, float) and not math.isfinite(value):
        raise check.fail(key, f"must be a finite number (stored as JSON), got {value}")


def _choice(check: _Checker, key: str, entry: dict[str, Any]) -> Choice:
    check.no_unknown(entry, CHOICE_KEYS, f"{key}.")
    values = entry.get("values")
    if not isinstance(values, list) or not values:
        raise check.fail(key, f"choice needs a non-empty list `values`, got {values!r}")
    for value in values:
        if not isinstance(value, str | int | float | bool):
            raise check.fail(key, f"choice values must be strings or numbers, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise check.fail(key, f"choice values must be finite numbers, got {value}")
    if any(isinstance(v, bool) for v in values) and any(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):  # stored as numbers, true would come back as 1
        raise check.fail(key, f"choice values mix booleans and numbers: pick one, got {values!r}")
    if len({repr(v) for v in values}) != len(values) or len(set(values)) != len(values):
        raise check.fail(key, f"choice values must be distinct, got {values!r}")
    return Choice(tuple(values))


def _numeric(check: _Checker, key: str, entry: dict[str, Any]) -> Numeric:
    kind = entry["type"]
    check.no_unknown(entry, NUMERIC_KEYS, f"{key}.")
    low, high = (check.number(entry, k, f"{key}.") for k in ("low", "high"))
    if low is None or high is None:
        raise check.fail(key, f"{kind} needs both low and high")
    minimum, maximum = (check.number(entry, k, f"{key}.") for k in ("min", "max"))
    if kind.endswith("randint"):
        for name, value in (("low", low), ("high", high), ("min", minimum), ("max", maximum)):
            if value is not None and value != int(value):
                raise check.fail(key, f"{kind} needs integer bounds, got {name}={value}")
    if kind.startswith("log") and low <= 0:
        raise check.fail(key, f"{kind} needs low > 0, got low={low}")
    if low >= high:
        raise check.fail(key, f"needs low < high, got low={low} high={high}")
    if not _widenable(kind, low, high):
        raise check.fail(
            key,
            "range too wide for floating point (high - low, and the range widened by twice "
            f"that on each side as --widen may, must stay finite), got low={low} high={high}",
        )
    if minimum is not None and minimum > low:
        raise check.fail(key, f"needs min <= low, got min={minimum} low={low}")
    if maximum is not None and maximum < high:
        raise check.fail(key, f"needs high <= max, got high={high} max={maximum}")
    if kind.startswith("log") and minimum is not None and minimum <= 0:
        raise check.fail(key, f"{kind} needs min > 0, got min={minimum}")
    if kind.endswith("randint"):
        return Numeric(kind, int(low), int(high), _opt_int(minimum), _opt_int(maximum))
    return Numeric(kind, float(low), float(high), minimum, maximum)


def _widenable(kind: str, low: float, high: float) -> bool:
    """Whether the range, widened by twice its width on each side (the most a proposal
    moves a flagged side: pad <= 2), is still made of finite numbers."""
    if kind.startswith("log"):
        low, high = math.log10(low), math.log10(high)
    width = high - low
    lowest, highest = low - 2 * width, high + 2 * width
    if kind.startswith("log"):  # 10**x must neither overflow nor round to 0
        return math.log10(sys.float_info.min) < lowest and highest < math.log10(sys.float_info.max)
    return all(math.isfinite(v) for v in (width, lowest, highest))


def _opt_int(value: float | None) -> int | None:
    return None if value is None else int(value)


__all__ = ["NUMERIC_TYPES", "FineSettings", "StageSettings", "StudySpec", "load_spec"]
