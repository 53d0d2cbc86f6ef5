"""How to run one stage: the options `coarse`, `fine` and `submit` share, as one frozen record.

`to_argv` is the one place that writes them as `hpsearch coarse|fine` options, for the command
line of a Ray Job. tests/test_run_options.py parses that back with the real commands, so an
option added to `coarse` or `fine` that never reaches a submitted job fails it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from hpsearch.errors import HpsearchError
from storage import StageKind

# Options a submitted job does not get, and why.
LOCAL_ONLY = {
    "address": "the job joins the cluster it runs on (Ray gives the job its address); "
    "`submit --address` names that cluster's dashboard instead",
    "cpus": "it sizes a Ray started on this machine; a job runs on a cluster that exists",
}
# Options of one stage kind only.
KIND_ONLY = {"widen": StageKind.COARSE, "from_stage": StageKind.FINE, "top": StageKind.FINE}


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Every field is required, so a new one cannot be forgotten where the record is built.

    None means "the spec's value" (trials, epochs), "derived" (seed) or "not given".
    """

    trials: int | None
    epochs: int | None
    seed: int | None
    address: str | None
    cpus: int | None
    cpus_per_trial: float
    gpus_per_trial: float
    max_retries: int
    quiet: bool
    widen: bool
    from_stage: int | None
    top: int | None
    artifacts: str | None

    def check(self, kind: StageKind) -> None:
        """Refuse options of the other stage kind (e.g. --widen on a fine stage)."""
        wrong = [
            _flag(name)
            for name, only in KIND_ONLY.items()
            if only is not kind and getattr(self, name) not in (None, False)
        ]
        if wrong:
            verb = "are options" if len(wrong) > 1 else "is an option"
            other = StageKind.FINE if kind is StageKind.COARSE else StageKind.COARSE
            raise HpsearchError(f"{' and '.join(wrong)} {verb} of a {other} stage, not {kind}")

    def to_argv(self, kind: StageKind) -> list[str]:
        """The options of `hpsearch KIND SPEC --db DB` that run this stage as a job would."""
        self.check(kind)
        argv: list[str] = []
        for field in fields(self):
            value: Any = getattr(self, field.name)
            if field.name in LOCAL_ONLY or value is None or value is False:
                continue
            argv.append(_flag(field.name))
            if value is not True:
                argv.append(str(value))  # str(float) round-trips exactly
        return argv


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


__all__ = ["KIND_ONLY", "LOCAL_ONLY", "RunOptions"]
