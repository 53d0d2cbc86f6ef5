"""Search quality at an equal epoch budget: hpsearch vs random search, Optuna and Ray Tune.

    python benchmarks/search_quality.py --workers 1 --json rows.json --plots docs   # all
    python benchmarks/search_quality.py --seeds 2 --mlp-seeds 2 --tune-seeds 1     # a look
    python benchmarks/search_quality.py --load rows.json --plots docs    # report again
    python benchmarks/search_quality.py --methods coarse->fine,asha --merge old.json \
        --json rows.json    # rerun two methods, the other methods' rows taken from old.json

Problems:
  * Branin (2-D) and Hartmann-6 with every coordinate behind a log-scaled parameter
    (`x = lo + (hi - lo) * position of log10(p) in [L, H]`) and a synthetic learning curve
    `y(x, e) = f(x) + A * exp(-e / tau(x)) + noise`, where tau (2..8 epochs) depends on the
    last coordinate, so slow starters exist and the coarse ranking is not the fine one.
    Two variants each: ranges that contain the optimum ("inside"), and ranges where one
    coordinate's optimum lies beyond the high end ("edge"). Score: regret f(x*) - f_min of
    the chosen configuration (noise-free, converged).
  * The numpy MLP (trainables.mlp) with 3 hidden layers on digits, with wide log ranges for
    lr, reg and the init std; and a harder one: 5 hidden layers trained on 200 digits with
    batch 25, the momentum tuned too. Score: test accuracy of the chosen configuration.

Methods, all with the same total number of epochs (a trial cut short counts the epochs it
ran; every trial is a generator of epochs, so a trial stopped early really stops):
  * coarse->fine: hpsearch's default, `hpsearch coarse` + `hpsearch fine`: the planner
    (`hpsearch.planner`: parent, proposal, seeds, keep-then-sample, epoch budget) plans each
    stage and `run_stage` runs it as hpsearch's driver does (one worker). A coarse stage of
    short trials (`[coarse] schedule = "none"`), then a fine stage on the proposed ranges with
    `[fine] schedule = "asha"` (eta 3, grace 1, budget "epochs"; hpsearch's rung board) of
    (budget left) // (fine epochs) nominal trials: it re-runs the 3 best coarse
    configurations first (`keep = 3`) and draws trials (`planner.draws`) until the nominal
    trials' epochs are spent, so it may end a little over or under the budget;
  * coarse->fine budget=trials: the same with `budget = "trials"`: the nominal fine trial
    count under ASHA, fewer epochs spent;
  * coarse->fine schedule=none: the old default, every fine trial full length;
  * coarse->fine keep=0: every fine configuration sampled (the ablation);
  * coarse->widen->fine: a smaller coarse stage, a second coarse stage on the proposal when
    an edge flag fires, then the fine stage (what `hpsearch coarse --widen` does);
  * asha: one stage on the spec's ranges with `schedule = "asha"`, budget "epochs", of
    `single` full-length trials nominal (drawn until their epochs are spent);
  * random: single-stage random search, every trial full length;
  * optuna-tpe, optuna-random: Optuna samplers with defaults, every trial full length;
    optuna-tpe+hyperband, optuna-tpe+median: TPE with a pruner, trials until the budget is spent;
  * ray-tune-asha: Ray Tune's `AsyncHyperBandScheduler` (max_t = full length, grace 1,
    reduction factor 3) with Tune's default random search, one trial at a time, until the
    budget is spent; run in this process on one local Ray while the pool runs the rest.
The chosen configuration is the full-length trial with the best observed value.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # nothing per epoch on disk
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 silences the old reporter only

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from ray.tune.stopper import Stopper  # noqa: E402
from scipy.stats import rankdata, spearmanr, wilcoxon  # noqa: E402

from hpsearch import planner  # noqa: E402
from hpsearch.asha import EpochBudget, RungBoard, Schedule  # noqa: E402
from hpsearch.driver import CHUNK  # noqa: E402
from hpsearch.planner import History, NewStage, NoProposalError, StageRequest  # noqa: E402
from hpsearch.space import Numeric, Space  # noqa: E402
from hpsearch.spec import FineSettings, StageSettings, StudySpec  # noqa: E402
from storage import (  # noqa: E402
    FlagRecord,
    Mode,
    StageKind,
    StageRecord,
    StageStatus,
    Status,
    StudyRecord,
    TrialRecord,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)

# -- problems -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    coarse: tuple[int, int]  # trials, epochs
    fine: tuple[int, int]
    widen_coarse: tuple[int, int]  # each of the two coarse stages of coarse->widen->fine

    @property
    def total(self) -> int:
        return self.coarse[0] * self.coarse[1] + self.fine[0] * self.fine[1]

    @property
    def single(self) -> int:
        """Full-length trials that fit the budget."""
        return self.total // self.fine[1]


@dataclass
class Problem:
    name: str
    space: Space
    mode: Mode  # of the observed metric
    budget: Budget
    # (params, epochs, seed) -> the observed value per epoch, as the trial runs (NaN once, then
    # nothing, when it diverges), and its final score once the curve ended (NaN if it diverged)
    stream: Callable[[dict[str, Any], int, int], tuple[Iterator[float], Callable[[], float]]]
    score_name: str  # what the final score is: regret (lower better) or test_acc


def branin(x1: float, x2: float) -> float:
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


BRANIN_MIN = 0.397887

H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
H6_MIN = -3.32237


def hartmann6(x: np.ndarray) -> float:
    return float(-np.sum(H6_ALPHA * np.exp(-np.sum(H6_A * (x - H6_P) ** 2, axis=1))))


@dataclass(frozen=True)
class LogMap:
    """A parameter p in [10**L, 10**H] stands for x in [lo, hi], linearly in log10 p."""

    decades: tuple[float, float]
    domain: tuple[float, float]

    def to_x(self, p: float) -> float:
        (L, H), (lo, hi) = self.decades, self.domain
        return lo + (hi - lo) * (math.log10(p) - L) / (H - L)

    def to_p(self, x: float) -> float:
        (L, H), (lo, hi) = self.decades, self.domain
        return 10 ** (L + (H - L) * (x - lo) / (hi - lo))


def curve_problem(
    name: str,
    f: Callable[[list[float]], float],
    f_min: float,
    maps: list[LogMap],
    searched: list[tuple[float, float]],
    amplitude: float,
    noise: float,
    budget: Budget,
) -> Problem:
    """`searched`: the coordinate ranges given to the search (may miss the optimum)."""
    names = [f"p{i + 1}" for i in range(len(maps))]
    space = Space(
        {
            n: Numeric("loguniform", m.to_p(lo), m.to_p(hi))
            for n, m, (lo, hi) in zip(names, maps, searched, strict=True)
        }
    )
    last = maps[-1].domain

    def stream(
        params: dict[str, Any], epochs: int, seed: int
    ) -> tuple[Iterator[float], Callable[[], float]]:
        x = [m.to_x(params[n]) for n, m in zip(names, maps, strict=True)]
        final = f(x)
        z = min(max((x[-1] - last[0]) / (last[1] - last[0]), 0.0), 1.0)
        tau = 2.0 * 4.0**z
        rng = np.random.default_rng(seed)
        curve = (
            final + amplitude * math.exp(-e / tau) + noise * rng.standard_normal()
            for e in range(1, epochs + 1)
        )
        return curve, lambda: final - f_min

    return Problem(name, space, Mode.MIN, budget, stream, "regret")


SYNTH_BUDGET = Budget(coarse=(60, 2), fine=(12, 15), widen_coarse=(40, 2))


def synthetic_problems() -> list[Problem]:
    b_maps = [LogMap((-4, 2), (-5, 10)), LogMap((-5, 1), (0, 15))]
    h_maps = [LogMap((-3, 1), (0, 1)) for _ in range(6)]
    branin2 = lambda x: branin(x[0], x[1])  # noqa: E731
    hart = lambda x: hartmann6(np.array(x))  # noqa: E731
    full6 = [(0.0, 1.0)] * 6
    return [
        curve_problem(
            "branin-inside",
            branin2,
            BRANIN_MIN,
            b_maps,
            [(-5, 10), (0, 15)],
            30,
            0.3,
            SYNTH_BUDGET,
        ),
        curve_problem(  # every optimum has x2 > 2.2: beyond the searched high end
            "branin-edge",
            branin2,
            BRANIN_MIN,
            b_maps,
            [(-5, 10), (0, 2)],
            30,
            0.3,
            SYNTH_BUDGET,
        ),
        curve_problem("hartmann6-inside", hart, H6_MIN, h_maps, full6, 2, 0.02, SYNTH_BUDGET),
        curve_problem(  # the optimum has x1 = 0.20: beyond the searched high end 0.12
            "hartmann6-edge",
            hart,
            H6_MIN,
            h_maps,
            [(0.0, 0.12), *full6[1:]],
            2,
            0.02,
            SYNTH_BUDGET,
        ),
    ]


MLP_BUDGET = Budget(coarse=(40, 1), fine=(8, 10), widen_coarse=(24, 1))
MLP_FIXED = {"data": "digits", "hidden": 64, "depth": 3, "update": "momentum", "batch": 100}
# harder: 200 training digits, 5 hidden layers, small batches, the momentum tuned too
DEEP_BUDGET = Budget(coarse=(40, 2), fine=(8, 20), widen_coarse=(24, 2))
DEEP_FIXED = {
    "data": "digits",
    "train_rows": 200,
    "hidden": 64,
    "depth": 5,
    "update": "momentum",
    "batch": 25,
}


def mlp_stream(
    fixed: dict[str, Any], params: dict[str, Any], epochs: int, seed: int
) -> tuple[Iterator[float], Callable[[], float]]:
    """Validation accuracy per epoch as the net trains, and the trained net's test accuracy.

    The caller stops a trial by no longer iterating: the epochs not asked for never run."""
    from trainables import mlp
    from trainables._loop import fit, load_data
    from trainables._params import parse_hidden, resolve
    from trainables.models import Net

    cfg = resolve("mlp", {**fixed, **params}, mlp.DEFAULTS)
    rng = np.random.default_rng(seed)
    data = load_data(cfg)
    hidden = parse_hidden(cfg["hidden"], cfg["depth"])
    net = Net.create(
        data.n_features, data.n_classes, hidden=hidden, loss_kind="softmax",
        init=cfg["init"], dropout=0.0, rng=rng,
    )  # fmt: skip
    diverged = False

    def curve() -> Iterator[float]:
        nonlocal diverged
        try:
            for metrics in fit(net, data, cfg, epochs=epochs, rng=rng):
                yield metrics["val_acc"]
        except FloatingPointError:
            diverged = True
            yield float("nan")

    def score() -> float:
        if diverged:
            return float("nan")  # no model to test
        scores = net.forward(data.X_test.astype(np.float64)).scores
        return float((scores.argmax(axis=1) == data.y_test).mean())

    return curve(), score


def mlp_problem() -> Problem:
    space = Space(
        {
            "lr": Numeric("loguniform", 1e-6, 1e1),
            "reg": Numeric("loguniform", 1e-6, 1e1),
            "init": Numeric("loguniform", 1e-4, 1.0),
        }
    )
    stream = partial(mlp_stream, MLP_FIXED)
    return Problem("mlp-digits", space, Mode.MAX, MLP_BUDGET, stream, "test_acc")


def deep_problem() -> Problem:
    space = Space(
        {
            "lr": Numeric("loguniform", 1e-6, 1e1),
            "reg": Numeric("loguniform", 1e-6, 1e1),
            "init": Numeric("loguniform", 1e-4, 1.0),
            "mu": Numeric("uniform", 0.0, 0.99),
        }
    )
    stream = partial(mlp_stream, DEEP_FIXED)
    return Problem("mlp-digits200-deep", space, Mode.MAX, DEEP_BUDGET, stream, "test_acc")


# -- methods --------------------------------------------------------------------------------


@dataclass
class Trial:
    params: dict[str, Any]
    curve: list[float]  # the epochs it ran (cut short when stopped)
    score: float  # regret or test accuracy of this config
    stopped: bool = False  # cut by a schedule (ASHA, a pruner, the budget): not chosen

    def best(self, mode: str) -> float | None:
        finite = [v for v in self.curve if math.isfinite(v)]
        if len(finite) < len(self.curve) or not finite:
            return None
        return Mode(mode).best_first(finite, float)[0]


def run_trial(problem: Problem, params: dict[str, Any], epochs: int, seed: int) -> Trial:
    """A trial run to its last epoch (or until it diverges)."""
    curve, score = problem.stream(params, epochs, seed)
    values = list(curve)
    return Trial(params, values, score())


def run_trials(
    problem: Problem, configs: list[dict[str, Any]], epochs: int, seeds: Sequence[int]
) -> list[Trial]:
    return [run_trial(problem, c, epochs, int(s)) for c, s in zip(configs, seeds, strict=True)]


def random_seeds(rng: np.random.Generator, n: int) -> list[int]:
    return [int(s) for s in rng.integers(0, 2**31 - 1, size=n)]


def choose(problem: Problem, trials: list[Trial]) -> Trial | None:
    """The full-length trial with the best observed value (the first of equals)."""
    ok = [t for t in trials if not t.stopped and t.best(problem.mode) is not None]
    best = Mode(problem.mode).best_first(ok, lambda t: t.best(problem.mode) or 0.0)
    return best[0] if best else None


def records(problem: Problem, stage_id: int, trials: list[Trial]) -> list[TrialRecord]:
    out = []
    for i, t in enumerate(trials):
        value = t.best(problem.mode)
        status = Status.COMPLETED if value is not None else Status.DIVERGED
        if t.stopped:
            status = Status.STOPPED
        out.append(
            TrialRecord(
                i, stage_id, i, status, 0, 1, t.params, best_value=value, epochs_run=len(t.curve)
            )
        )
    return out


Steps = list[tuple[int, Trial | None]]  # epochs spent, then the trial if it may be chosen


def run_scheduled(
    problem: Problem,
    number: int,
    config: dict[str, Any],
    seed: int,
    epochs: int,
    board: RungBoard | None,
) -> Trial:
    """One trial as hpsearch's worker runs it: it ends diverged at a non-finite value,
    completed at its last epoch, or stopped at a rung when the stage's board says so."""
    stream, score = problem.stream(config, epochs, seed)
    curve: list[float] = []
    for e, value in enumerate(stream, start=1):  # stop iterating: no further epoch runs
        curve.append(value)
        if not math.isfinite(value) or e >= epochs:
            break
        if board is not None and e in board.rungs and board.report(number, e, value) is not None:
            return Trial(config, curve, float("nan"), stopped=True)
    return Trial(config, curve, score())


def run_stage(problem: Problem, spec: StudySpec, plan: NewStage) -> list[Trial]:
    """The planned stage's trials, one after another (one worker), as hpsearch's driver runs
    a stage: its spec schedule's rung board (`hpsearch.asha.RungBoard`) when that has rungs;
    the first `CHUNK` trials (and every kept one) drawn at the start, the rest by
    `planner.draws`, which with the stage's epoch budget (`hpsearch.asha.EpochBudget`) draws
    half the trials the budget leaves room for, then judges again once they ran. The budget
    never cuts a running trial: the stage stops drawing."""
    schedule = spec.schedule(plan.kind)
    rungs = schedule.rungs(plan.epochs)
    board = RungBoard(rungs, schedule.eta, str(problem.mode), "value") if rungs else None
    budget = None
    if plan.epoch_budget is not None:
        budget = EpochBudget(plan.epoch_budget, plan.epochs)
    trials: list[Trial] = []

    def run(start: int, configs: list[dict[str, Any]], seeds: list[int]) -> None:
        for number, (config, seed) in enumerate(zip(configs, seeds, strict=True), start):
            trial = run_scheduled(problem, number, config, int(seed), plan.epochs, board)
            trials.append(trial)
            if budget is not None:
                budget.end(number, len(trial.curve))

    first = plan.chunk(0, max(CHUNK, len(plan.keep)))
    if budget is not None:
        budget.drawn(len(first[0]))
    run(0, *first)
    for start, stop in planner.draws(plan.trials, len(first[0]), CHUNK, budget):
        run(start, *planner.configurations(plan.space, plan.seed, start, stop, plan.keep))
    return trials


def steps_of(trials: Sequence[Trial], eligible: bool = True) -> Steps:
    return [(len(t.curve), t if eligible and not t.stopped else None) for t in trials]


def trajectory(problem: Problem, steps: Steps) -> list[tuple[int, float]]:
    """(epochs spent, score of the chosen trial so far) after each trial."""
    spent, best, out = 0, None, []
    for epochs, trial in steps:
        spent += epochs
        value = trial.best(problem.mode) if trial is not None else None
        if trial is not None and value is not None and math.isfinite(trial.score):
            if best is None or Mode(problem.mode).better(value, best[0]):
                best = (value, trial.score)
        if best is not None:
            out.append((spent, best[1]))
    return out


ASHA = Schedule("asha", eta=3, grace=1, budget="epochs")  # hpsearch's `[fine]` default
NO_SCHEDULE = Schedule("none")  # hpsearch's `[coarse]` default


class InMemoryStudy:
    """A study's records held in memory: the planner decides each stage exactly as it does for
    `hpsearch coarse/fine` on a database (parent, proposal, keep-then-sample, seeds, epoch
    budget), and `run_stage` runs it as the driver does. Schedules are given, not taken from
    the settings' defaults."""

    def __init__(
        self,
        problem: Problem,
        seed: int,
        *,
        keep: int,
        fine: Schedule,
        coarse: Schedule = NO_SCHEDULE,
    ) -> None:
        self.problem = problem
        b = problem.budget
        self.spec = StudySpec(
            path=Path(problem.name),
            name=problem.name,
            trainable="benchmark",
            metric="value",
            mode=Mode(problem.mode),
            space=problem.space,
            coarse=StageSettings(*b.coarse, schedule=coarse),
            # top 10, edge 0.1, pad 0.25: the defaults
            fine=FineSettings(*b.fine, schedule=fine, keep=keep),
            seed=seed,
        )
        self.record = StudyRecord(1, problem.name, "benchmark", "value", problem.mode)
        self.stages: list[StageRecord] = []
        self.trials: dict[int, list[TrialRecord]] = {}
        self.flags: list[FlagRecord] = []  # of the latest stage

    def history(self) -> History:
        return History(self.record, tuple(self.stages), "memory")

    def plan(self, request: StageRequest) -> NewStage:
        decision = planner.decide(self.spec, request, self.history())
        assert isinstance(decision, planner.Start)
        parent_trials = self.trials[decision.parent.stage_id] if decision.parent else []
        return planner.new_stage(self.spec, request, self.history(), decision, parent_trials)

    def run(self, request: StageRequest) -> tuple[StageRecord, list[Trial]]:
        """Plan the stage with hpsearch's planner, run it, finish it (flags, proposal)."""
        return self._finish(self.plan(request))

    def run_on_spec_ranges(self, request: StageRequest) -> list[Trial]:
        """The fallback when nothing completed (hpsearch would refuse): sample the spec."""
        plan = planner.new_stage(self.spec, request, self.history(), planner.Start(None))
        return self._finish(plan)[1]

    def _finish(self, plan: NewStage) -> tuple[StageRecord, list[Trial]]:
        trials = run_stage(self.problem, self.spec, plan)
        stage_id = len(self.stages) + 1
        recs = records(self.problem, stage_id, trials)
        stage = StageRecord(
            stage_id,
            1,
            plan.kind,
            plan.parent_stage_id,
            StageStatus.FINISHED,
            plan.seed,
            plan.epochs,
            len(trials),
            plan.space.to_dict(),
            {},
            None,
            plan.epoch_budget,
        )
        analysis = planner.analyze_stage(self.spec, stage, recs)
        stage = replace(stage, proposal=analysis.stored_proposal())
        self.stages.append(stage)
        self.trials[stage_id] = recs
        self.flags = analysis.flags
        return stage, trials


@dataclass(frozen=True)
class Variant:
    """An hpsearch method: `hpsearch coarse` (+ `--widen` on an edge flag) + `hpsearch fine`."""

    fine: Schedule = ASHA
    keep: int = FineSettings(0, 0).keep
    widen: bool = False


VARIANTS = {
    "coarse->fine": Variant(),
    "coarse->fine budget=trials": Variant(fine=replace(ASHA, budget="trials")),
    "coarse->fine schedule=none": Variant(fine=NO_SCHEDULE),
    "coarse->fine keep=0": Variant(keep=0),
    "coarse->widen->fine": Variant(widen=True),
}


def coarse_fine(
    problem: Problem, rng: np.random.Generator, variant: Variant
) -> tuple[Trial | None, dict[str, Any]]:
    """Coarse stage(s), then a fine stage of (budget left) // (fine epochs) nominal trials,
    under the variant's fine schedule."""
    b = problem.budget
    study = InMemoryStudy(
        problem, int(rng.integers(2**31 - 1)), keep=variant.keep, fine=variant.fine
    )
    n, e = b.widen_coarse if variant.widen else b.coarse
    first, coarse = study.run(StageRequest(StageKind.COARSE, n, e))
    used, widened = n * e, False
    edge_flag = any(f.side in ("low", "high") for f in study.flags)
    if variant.widen and edge_flag and first.proposal is not None:
        coarse += study.run(StageRequest(StageKind.COARSE, n, e, widen=True))[1]
        used, widened = used + n * e, True
    fine = StageRequest(StageKind.FINE, (b.total - used) // b.fine[1], b.fine[1])
    try:
        _, trials = study.run(fine)
    except NoProposalError:  # no coarse trial completed
        trials = study.run_on_spec_ranges(fine)
    steps: Steps = [*steps_of(coarse, eligible=False), *steps_of(trials)]
    extra = {
        "edge_flag": edge_flag,
        "widened": widened,
        "trajectory": trajectory(problem, steps),
        "epochs": sum(epochs for epochs, _ in steps),
        "fine_trials": len(trials),
    }
    return choose(problem, trials), extra


def single_asha(problem: Problem, rng: np.random.Generator) -> tuple[Trial | None, dict[str, Any]]:
    """One stage with `schedule = "asha"`, `budget = "epochs"` on the spec's ranges: a coarse
    stage of `single` full-length trials nominal, drawing until their epochs are spent."""
    b = problem.budget
    study = InMemoryStudy(problem, int(rng.integers(2**31 - 1)), keep=0, fine=ASHA, coarse=ASHA)
    _, trials = study.run(StageRequest(StageKind.COARSE, b.single, b.fine[1]))
    steps = steps_of(trials)
    return choose(problem, trials), {
        "trajectory": trajectory(problem, steps),
        "epochs": sum(epochs for epochs, _ in steps),
        "trials": len(trials),
    }


def single_random(problem: Problem, rng) -> tuple[Trial | None, dict]:
    b = problem.budget
    configs = problem.space.sample(b.single, rng)
    trials = run_trials(problem, configs, b.fine[1], random_seeds(rng, b.single))
    e = problem.budget.coarse[1]
    pairs = [(t.curve[e - 1], t.curve[-1]) for t in trials if len(t.curve) == b.fine[1]]
    return choose(problem, trials), {
        "pairs": pairs,
        "trajectory": trajectory(problem, steps_of(trials)),
    }


def optuna_search(
    problem: Problem, seed: int, sampler_name: str, pruner_name: str = ""
) -> tuple[Trial | None, dict]:
    """Optuna 5 with default settings; with a pruner, every epoch is reported and trials run
    until the epoch budget is spent (a pruned trial counts the epochs it ran)."""
    b = problem.budget
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if sampler_name == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if pruner_name == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=b.fine[1])
    elif pruner_name == "median":
        pruner = optuna.pruners.MedianPruner()
    study = optuna.create_study(
        # HyperbandPruner picks a trial's bracket from a hash of the study's name (random
        # unless given): a fixed name makes the run repeatable
        study_name=f"{problem.name}-{seed}",
        direction="maximize" if problem.mode == Mode.MAX else "minimize",
        sampler=sampler,
        pruner=pruner,
    )
    trials: list[Trial] = []
    rng = np.random.default_rng(seed + 7)

    def objective(ot: optuna.Trial) -> float:
        params = {
            name: ot.suggest_float(name, dim.low, dim.high, log=dim.is_log)
            for name, dim in problem.space.dimensions.items()
        }
        stream, score = problem.stream(params, b.fine[1], int(rng.integers(2**31 - 1)))
        left = b.total - sum(len(t.curve) for t in trials)
        curve: list[float] = []
        for epoch, value in enumerate(stream, start=1):  # stop iterating: no further epoch runs
            curve.append(value)
            if not math.isfinite(value):
                break
            ot.report(value, epoch)
            if epoch < b.fine[1] and (epoch >= left or (pruner_name and ot.should_prune())):
                trials.append(Trial(params, curve, float("nan"), stopped=True))
                raise optuna.TrialPruned()
        trial = Trial(params, curve, score())
        trials.append(trial)
        value = trial.best(problem.mode)
        return float("nan") if value is None else value  # optuna marks NaN trials failed

    def out_of_budget(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if sum(len(t.curve) for t in trials) >= b.total:
            study.stop()

    study.optimize(objective, n_trials=b.total, callbacks=[out_of_budget])
    return choose(problem, trials), {"trajectory": trajectory(problem, steps_of(trials))}


def tune_trainable(config: dict[str, Any]) -> None:
    """A Ray Tune function trainable: one epoch per `tune.report`; when the scheduler stops
    the trial, Tune stops calling back into it and no further epoch runs."""
    from ray import tune

    problem = problem_named(config["problem"])
    params = {name: config[name] for name in problem.space.dimensions}
    epochs = config["epochs"]
    stream, score = problem.stream(params, epochs, config["seed"])
    for epoch, value in enumerate(stream, start=1):
        tune.report({"value": value, "score": score() if epoch == epochs else float("nan")})
        if not math.isfinite(value):
            return  # diverged: the trial ends (ASHA's cut-offs ignore NaN)


class TuneBudget(Stopper):
    """A Tune stopper that records every trial's values per epoch and ends the experiment
    once `budget` epochs are spent (the trial that crosses it is stopped there)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.curves: dict[str, dict[int, tuple[float, float]]] = {}  # trial: epoch: value, score

    @property
    def spent(self) -> int:
        return sum(len(c) for c in self.curves.values())

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        curve = self.curves.setdefault(trial_id, {})
        epoch = int(result["training_iteration"])
        if epoch not in curve and self.spent >= self.budget:
            return True
        curve[epoch] = (float(result["value"]), float(result["score"]))
        return self.spent >= self.budget

    def stop_all(self) -> bool:
        return self.spent >= self.budget

    def trials(self, epochs: int) -> list[Trial]:
        out = []
        for curve in self.curves.values():  # in the order the trials reported
            values = [curve[e][0] for e in sorted(curve)]
            cut = len(values) < epochs and all(math.isfinite(v) for v in values)
            score = curve[max(curve)][1] if curve else float("nan")
            out.append(Trial({}, values, score, stopped=cut))
        return out


def ray_tune_asha(problem: Problem, seed: int, storage: Path) -> tuple[Trial | None, dict]:
    """Ray Tune's `AsyncHyperBandScheduler` with Tune's default search (random sampling by
    `BasicVariantGenerator`, seeded), one trial at a time, until the epoch budget is spent."""
    from ray import tune
    from ray.tune.schedulers import AsyncHyperBandScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    b = problem.budget
    epochs = b.fine[1]
    space: dict[str, Any] = {
        name: (tune.loguniform if dim.is_log else tune.uniform)(dim.low, dim.high)
        for name, dim in problem.space.dimensions.items()
    }
    space.update(seed=tune.randint(0, 2**31 - 1), problem=problem.name, epochs=epochs)
    budget = TuneBudget(b.total)
    rng = np.random.default_rng([seed, METHODS.index("ray-tune-asha")])
    tuner = tune.Tuner(
        tune_trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="value",
            mode="max" if problem.mode == Mode.MAX else "min",
            search_alg=BasicVariantGenerator(random_state=rng),
            scheduler=AsyncHyperBandScheduler(
                time_attr="training_iteration", max_t=epochs, grace_period=1, reduction_factor=3
            ),
            num_samples=b.total,
            max_concurrent_trials=1,  # one worker, like hpsearch's ASHA and Optuna here
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"{problem.name}-{seed}", storage_path=str(storage), verbose=0, stop=budget
        ),
    )
    tuner.fit()
    trials = budget.trials(epochs)
    return choose(problem, trials), {
        "trajectory": trajectory(problem, steps_of(trials)),
        "epochs": budget.spent,
    }


# each method's random stream is seeded by (seed, its index here): keep the positions
METHODS = (
    "coarse->fine",
    "coarse->fine budget=trials",
    "coarse->fine schedule=none",
    "coarse->fine keep=0",
    "coarse->widen->fine",
    "asha",
    "random",
    "optuna-tpe",
    "optuna-tpe+hyperband",
    "optuna-tpe+median",
    "optuna-random",
    "ray-tune-asha",
)
TUNE = "ray-tune-asha"  # run in the main process on its one local Ray, not in the pool


def one_seed(args: tuple[str, int, tuple[str, ...]]) -> list[dict[str, Any]]:
    """The rows of these methods (Ray Tune's aside) on one problem and seed."""
    problem_name, seed, methods = args
    problem = problem_named(problem_name)
    rows = []
    for method in methods:
        rng = np.random.default_rng([seed, METHODS.index(method)])
        if method in VARIANTS:
            chosen, extra = coarse_fine(problem, rng, VARIANTS[method])
        elif method == "random":
            chosen, extra = single_random(problem, rng)
        elif method == "asha":
            chosen, extra = single_asha(problem, rng)
        else:
            sampler, _, pruner = method.split("-")[1].partition("+")
            chosen, extra = optuna_search(problem, seed, sampler, pruner)
        rows.append(row(problem, seed, method, chosen, extra))
    return rows


def row(problem: Problem, seed: int, method: str, chosen: Trial | None, extra: dict) -> dict:
    return {
        "problem": problem.name,
        "seed": seed,
        "method": method,
        "observed": None if chosen is None else chosen.best(problem.mode),
        "score": None if chosen is None else chosen.score,
        **extra,
    }


def tune_seeds(
    jobs: list[tuple[str, int]], cpus: int, keep: Callable[[list[dict[str, Any]]], None]
) -> None:
    """Ray Tune's ASHA on each (problem, seed), all on one local Ray started here (with the
    options of hpsearch's own local Ray: loopback, no dashboard, quiet)."""
    import tempfile

    import ray

    from hpsearch.runtime.local_ray import start_on_loopback

    start_on_loopback(cpus)
    try:
        with tempfile.TemporaryDirectory(prefix="hpsearch-tune-") as storage:
            for name, seed in jobs:
                problem, started = problem_named(name), time.monotonic()
                chosen, extra = ray_tune_asha(problem, seed, Path(storage))
                keep([row(problem, seed, TUNE, chosen, extra)])
                seconds = time.monotonic() - started
                print(f"{TUNE} {name} seed {seed}: {seconds:.1f} s", file=sys.stderr, flush=True)
    finally:
        ray.shutdown()


def all_problems() -> list[Problem]:
    return [*synthetic_problems(), mlp_problem(), deep_problem()]


def problem_named(name: str) -> Problem:
    return next(p for p in all_problems() if p.name == name)


# -- report ---------------------------------------------------------------------------------


def summarize(rows: list[dict[str, Any]], problem: Problem) -> list[str]:
    lines = [
        f"### {problem.name}: {problem.score_name} of the chosen config "
        f"(budget {problem.budget.total} epochs; coarse {problem.budget.coarse[0]}x"
        f"{problem.budget.coarse[1]} + fine {problem.budget.fine[0]}x{problem.budget.fine[1]}; "
        f"single-stage {problem.budget.single}x{problem.budget.fine[1]})",
        "",
        f"| method | seeds | median {problem.score_name} | 25%..75% | worst | median observed |",
        "|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method and r["problem"] == problem.name]
        scores = np.array([r["score"] for r in mine if r["score"] is not None], dtype=float)
        scores = scores[np.isfinite(scores)]
        observed = [r["observed"] for r in mine if r["observed"] is not None]
        if not len(scores):
            lines.append(f"| {method} | {len(mine)} | - | - | - | - |")
            continue
        q25, q50, q75 = np.percentile(scores, [25, 50, 75])
        worst = scores.max() if problem.score_name == "regret" else scores.min()
        lines.append(
            f"| {method} | {len(mine)} | {q50:.4g} | {q25:.4g}..{q75:.4g} | {worst:.4g} "
            f"| {np.median(observed):.4g} |"
        )
    lines += ["", *epochs_spent(rows, problem)]
    for reference in REFERENCES:
        tests = paired_tests(rows, problem, reference)
        lines += ["", *tests] if tests else []
    flags = [r for r in rows if r["problem"] == problem.name and r["method"] == "coarse->fine"]
    fired = sum(bool(r["edge_flag"]) for r in flags)
    lines.append("")
    lines.append(f"Edge flag fired in the coarse stage in {fired} of {len(flags)} seeds.")
    pairs = [r["pairs"] for r in rows if r["problem"] == problem.name and r["method"] == "random"]
    rhos = [spearmanr(*zip(*p, strict=True)).statistic for p in pairs if len(p) >= 3]
    rhos = [r for r in rhos if math.isfinite(r)]
    if rhos:
        lines.append(
            f"Rank correlation (Spearman) of a trial's value after {problem.budget.coarse[1]} "
            f"epoch(s) and after {problem.budget.fine[1]}: median {np.median(rhos):.2f} "
            f"(25%..75% {np.percentile(rhos, 25):.2f}..{np.percentile(rhos, 75):.2f}, "
            f"{len(rhos)} seeds of {problem.budget.single} random trials)."
        )
    return lines


def epochs_spent(rows: list[dict[str, Any]], problem: Problem) -> list[str]:
    """Epochs each method really spent against the budget: hpsearch's stages with an epoch
    budget stop drawing near it (over by what the last trials run, under by less than one
    average trial), and diverged trials end early."""
    total = problem.budget.total
    lines = [f"Epochs spent minus the budget of {total} (median, min..max over seeds):"]
    for method in METHODS:
        mine = [r for r in rows if r["problem"] == problem.name and r["method"] == method]
        over = np.array([r["epochs"] - total for r in mine if "epochs" in r])
        if not len(over):
            continue
        trials = [r[k] for r in mine for k in ("fine_trials", "trials") if k in r]
        drawn = f"; trials of its last stage: median {np.median(trials):.0f}" if trials else ""
        lines.append(
            f"- {method}: {np.median(over):+.0f} ({over.min():+d}..{over.max():+d}){drawn}"
        )
    return lines


# hpsearch's variants each rival is tested against: the first is what `hpsearch coarse` +
# `hpsearch fine` do out of the box (`[fine] schedule = "asha"`, budget "epochs")
DEFAULT = "coarse->fine"
REFERENCES = (DEFAULT, "coarse->fine budget=trials", "coarse->fine schedule=none")
# the methods that are not hpsearch
RIVALS = METHODS[METHODS.index("random") :]
WORST = {"regret": math.inf, "test_acc": 0.0}  # a seed without a chosen trial


def scores_of(rows: list[dict[str, Any]], problem: Problem, method: str) -> dict[int, float]:
    """Score per seed; a seed whose method chose nothing (or a diverged net) counts as worst."""
    out = {}
    for r in rows:
        if r["problem"] == problem.name and r["method"] == method:
            score = r["score"]
            finite = score is not None and math.isfinite(score)
            out[r["seed"]] = score if finite else WORST[problem.score_name]
    return out


@dataclass
class Paired:
    better: int  # seeds where the reference is better
    worse: int
    n: int
    median_diff: float  # > 0: the reference is worse
    p: float
    signed_ranks: float = 0.0  # Wilcoxon's signed-rank sum: < 0, the reference is better

    @property
    def text(self) -> str:
        return f"{self.better}/{self.worse} of {self.n}, p={self.p:.2g}"

    @property
    def verdict(self) -> str:
        """better or worse when the difference is significant (p < 0.05), else level."""
        if self.p >= 0.05:
            return "level"
        return "better" if self.signed_ranks < 0 else "worse"


def paired(rows: list[dict[str, Any]], problem: Problem, reference: str, rival: str) -> Paired:
    """Wilcoxon signed-rank test, paired by seed, of `reference` against `rival`."""
    mine, theirs = scores_of(rows, problem, reference), scores_of(rows, problem, rival)
    both = [s for s in mine if s in theirs]
    sign = 1.0 if problem.score_name == "regret" else -1.0  # > 0: the reference is worse
    diff = np.array([sign * (mine[s] - theirs[s]) for s in both])
    diff = np.where(np.isnan(diff), 0.0, diff)  # both chose nothing: a tie
    finite = diff[np.isfinite(diff)]
    if len(both) < 5 or not np.any(diff):
        return Paired(int((diff < 0).sum()), int((diff > 0).sum()), len(both), 0.0, 1.0)
    clipped = np.clip(diff, -1e9, 1e9)
    p = float(wilcoxon(clipped).pvalue)
    median = float(np.median(finite)) if len(finite) else 0.0
    nonzero = clipped[clipped != 0]
    ranks = float(np.sum(np.sign(nonzero) * rankdata(np.abs(nonzero))))
    return Paired(int((diff < 0).sum()), int((diff > 0).sum()), len(both), median, p, ranks)


def paired_tests(rows: list[dict[str, Any]], problem: Problem, reference: str) -> list[str]:
    lines = [f"Paired by seed, {reference} against each rival (Wilcoxon signed-rank):"]
    ran = {r["method"] for r in rows if r["problem"] == problem.name}
    if reference not in ran:
        return []
    for method in METHODS:
        if method == reference or method not in ran:
            continue
        t = paired(rows, problem, reference, method)
        lines.append(
            f"- vs {method}: median paired difference {t.median_diff:+.3g} in "
            f"{problem.score_name} (< 0: {reference} is better), better in {t.better} / worse "
            f"in {t.worse} of {t.n} seeds, p = {t.p:.2g}"
        )
    return lines


def overview(rows: list[dict[str, Any]], problems: list[Problem]) -> list[str]:
    """The tables of BENCHMARKS.md: medians, spread, and the paired tests per reference."""
    shown = [p for p in problems if any(r["problem"] == p.name for r in rows)]
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    lines = ["| problem | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    spread = list(lines)
    for problem in shown:
        cells, spreads = [], []
        for method in methods:
            values = np.array(list(scores_of(rows, problem, method).values()), dtype=float)
            if not len(values):
                cells.append("-")
                spreads.append("-")
                continue
            q25, q50, q75 = np.percentile(values, [25, 50, 75])
            worst = values.max() if problem.score_name == "regret" else values.min()
            cells.append(f"{q50:.3g} ({len(values)})")
            spreads.append(f"{q25:.3g}..{q75:.3g}, worst {worst:.3g}")
        lines.append(f"| {problem.name} | " + " | ".join(cells) + " |")
        spread.append(f"| {problem.name} | " + " | ".join(spreads) + " |")
    out = ["Median score (seeds):", "", *lines, "", "25%..75%, worst:", "", *spread]
    out += ["", *verdicts(rows, shown, "")]
    title = ", every method stopped at the budget (trials that ended past it ignored)"
    out += ["", *verdicts(within_budget(rows, shown), shown, title)]
    for reference in (r for r in REFERENCES if r in methods):
        rivals = [m for m in methods if m != reference]
        out += [
            "",
            f"Paired by seed, {reference} against each rival: seeds better/worse, Wilcoxon p:",
            "",
            "| problem | " + " | ".join(f"vs {m}" for m in rivals) + " |",
            "|---" * (len(rivals) + 1) + "|",
        ]
        for problem in shown:
            cells = [paired(rows, problem, reference, m).text for m in rivals]
            out.append(f"| {problem.name} | " + " | ".join(cells) + " |")
    return out


def within_budget(rows: list[dict[str, Any]], problems: list[Problem]) -> list[dict[str, Any]]:
    """The rows as if each method had stopped at the budget: the score of the trial it would
    have chosen from the trials that ended within the budget (from its trajectory)."""
    total = {p.name: p.budget.total for p in problems}
    out = []
    for r in rows:
        if "trajectory" in r and r["problem"] in total:
            inside = [score for spent, score in r["trajectory"] if spent <= total[r["problem"]]]
            r = {**r, "score": inside[-1] if inside else None}
        out.append(r)
    return out


def verdicts(rows: list[dict[str, Any]], problems: list[Problem], title: str) -> list[str]:
    """The issue's target, per problem: the default against the best rival (the best median
    score) and against random search; "level" is no significant difference (p >= 0.05)."""
    lines = [
        f"Target check for {DEFAULT}{title} (Wilcoxon, paired by seed; level: p >= 0.05):",
        "",
        f"| problem | {DEFAULT} | best rival | vs best rival | vs random "
        "| significantly worse than |",
        "|---|---|---|---|---|---|",
    ]
    for problem in problems:
        medians = {
            m: float(np.median(list(scores.values())))
            for m in RIVALS
            if (scores := scores_of(rows, problem, m))
        }
        mine = scores_of(rows, problem, DEFAULT)
        if not medians or not mine:
            continue
        pick = min if problem.score_name == "regret" else max
        best = pick(medians, key=lambda m: medians[m])
        tests = {m: paired(rows, problem, DEFAULT, m) for m in medians}
        worse = [m for m, t in tests.items() if t.verdict == "worse"]
        vs_random = tests.get("random")
        random_cell = f"{vs_random.verdict}, {vs_random.text}" if vs_random else "-"
        lines.append(
            f"| {problem.name} | {np.median(list(mine.values())):.3g} "
            f"| {best} ({medians[best]:.3g}) | {tests[best].verdict}, "
            f"{tests[best].text} | {random_cell} | {', '.join(worse) or 'none'} |"
        )
    return lines


def plot(rows: list[dict[str, Any]], problem: Problem, out: Path) -> Path:
    """Median over seeds of the chosen trial's score against the epochs spent, per method."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    mine = [r for r in rows if r["problem"] == problem.name and r.get("trajectory")]
    # hpsearch's stages with an epoch budget may end a little past it
    total = max([problem.budget.total, *(r["trajectory"][-1][0] for r in mine)])
    grid = np.arange(1, total + 1)
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    for i, method in enumerate(METHODS):
        runs = [
            r["trajectory"]
            for r in rows
            if r["problem"] == problem.name and r["method"] == method and "trajectory" in r
        ]
        if not runs:
            continue
        table = np.full((len(runs), len(grid)), np.nan)
        for k, path in enumerate(runs):
            for spent, score in path:
                table[k, grid >= spent] = score
        # seeds without a chosen trial yet count as worst; drawn once half the seeds have one
        worst = np.inf if problem.score_name == "regret" else -np.inf
        median = np.median(np.where(np.isfinite(table), table, worst), axis=0)
        median[np.sum(np.isfinite(table), axis=0) * 2 < len(runs)] = np.nan
        style = "-" if method.startswith("coarse") or method == "asha" else "--"
        ax.plot(grid, median, style, color=colormaps["tab20"](i), label=method)
    ax.axvline(problem.budget.total, color="grey", linewidth=0.5, linestyle=":")
    shown = min(total, int(1.5 * problem.budget.total))  # a few runs end far past the budget
    ax.set_xlim(0, shown)
    cut = f", cut at {shown} of {total}" if shown < total else ""
    ax.set_xlabel(f"epochs spent (dotted: the budget{cut})")
    ax.set_ylabel(f"{problem.score_name} of the best trial so far (median over seeds)")
    if problem.score_name == "regret":
        ax.set_yscale("log")
    ax.set_title(f"{problem.name}: best value found vs epochs spent")
    ax.legend(fontsize="x-small", ncol=2)
    path = out / f"search-quality-{problem.name}.png"
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30, help="seeds per synthetic problem")
    parser.add_argument("--mlp-seeds", type=int, default=30, help="seeds of each MLP problem")
    parser.add_argument(
        "--tune-seeds",
        type=int,
        default=None,
        help="Ray Tune seeds per synthetic problem (default: --seeds; the first N of them)",
    )
    parser.add_argument(
        "--tune-mlp-seeds",
        type=int,
        default=None,
        help="Ray Tune seeds per MLP problem (default: --mlp-seeds)",
    )
    parser.add_argument("--tune-cpus", type=int, default=1, help="num_cpus of the local Ray")
    parser.add_argument("--workers", type=int, default=1, help="processes besides Ray Tune's")
    parser.add_argument("--only", help="comma-separated problem names (default: all)")
    parser.add_argument(
        "--methods", help="comma-separated methods to run (default: all; see METHODS)"
    )
    parser.add_argument(
        "--merge",
        help="a --json file of an earlier run: its rows of the methods not run now are "
        "reported (and written to --json) with the new ones",
    )
    parser.add_argument("--plots", help="directory for a PNG per problem (e.g. docs)")
    parser.add_argument(
        "--json",
        help="append each job's rows to this file as it "
        "finishes; a rerun skips the jobs already in it",
    )
    parser.add_argument("--load", help="report from a --json file instead of running")
    args = parser.parse_args()  # fmt: skip
    methods = tuple(METHODS if not args.methods else args.methods.split(","))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if args.merge and not Path(args.merge).is_file():
        parser.error(f"--merge {args.merge}: no such file")
    started = time.monotonic()
    problems = [p for p in all_problems() if not args.only or p.name in args.only.split(",")]
    if args.load:
        rows = read_rows(Path(args.load))
    else:
        rows = run_all(problems, args, methods)
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, numpy {np.__version__}, optuna {optuna.__version__}"
        f", ray {ray_version()}"
    )
    print(f"Command: python {' '.join(sys.argv)}  ({time.monotonic() - started:.0f} s)\n")
    for problem in problems:
        if any(r["problem"] == problem.name for r in rows):
            print("\n".join(summarize(rows, problem)), "\n")
            if args.plots:
                print(f"picture: {plot(rows, problem, Path(args.plots))}\n")
    print("\n".join(overview(rows, problems)))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a --json file (one JSON list of rows per line)."""
    return [r for line in path.read_text().splitlines() for r in json.loads(line)]


def run_all(
    problems: list[Problem], args: argparse.Namespace, methods: tuple[str, ...]
) -> list[dict[str, Any]]:
    """A pool of spawned processes runs the methods but Ray Tune's; meanwhile this process
    runs Ray Tune. Each finished job's rows are appended to `--json` at once (one JSON list
    per line); jobs already there are not run again, so a broken run resumes. With
    `--merge`, that file's rows of the other methods (on the same problems and seeds) are
    taken as they are and written to `--json` first."""
    is_mlp = {p.name: p.name.startswith("mlp") for p in problems}
    n_seeds = {n: args.mlp_seeds if mlp else args.seeds for n, mlp in is_mlp.items()}
    n_tune = {
        n: min(n_seeds[n], (args.tune_mlp_seeds if mlp else args.tune_seeds) or n_seeds[n])
        for n, mlp in is_mlp.items()
    }
    out = Path(args.json) if args.json else None
    rows = read_rows(out) if out and out.exists() else []
    done = {(r["problem"], r["seed"], r["method"]) for r in rows}
    lock = threading.Lock()

    def keep(batch: list[dict[str, Any]]) -> None:
        with lock:
            rows.extend(batch)
            done.update((r["problem"], r["seed"], r["method"]) for r in batch)
            if out:
                with out.open("a") as f:
                    f.write(json.dumps(batch) + "\n")

    if args.merge:
        for batch in reused(read_rows(Path(args.merge)), methods, n_seeds, n_tune, done):
            keep(batch)
    pool_methods = tuple(m for m in methods if m != TUNE)
    # seed by seed across the problems, so a run stopped early has the same seeds everywhere
    jobs = []
    for s in range(max(n_seeds.values())):
        for n in n_seeds:
            missing = tuple(m for m in pool_methods if (n, s, m) not in done)
            if s < n_seeds[n] and missing:
                jobs.append((n, s, missing))
    tune_jobs = [
        (n, s) for s in range(max(n_tune.values())) for n in n_tune
        if TUNE in methods and s < n_tune[n] and (n, s, TUNE) not in done
    ]  # fmt: skip
    load = os.getloadavg()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(one_seed, job) for job in jobs]
        for future in futures:
            future.add_done_callback(lambda f: keep(f.result()))
        if tune_jobs:
            tune_seeds(tune_jobs, args.tune_cpus, keep)
        wait(futures)
    for future in futures:
        future.result()  # a job that failed (or a worker that died) is raised here
    print(f"Load average (1, 5, 15 min) at the start {load}, at the end {os.getloadavg()}")
    return rows


def reused(
    old: list[dict[str, Any]],
    methods: tuple[str, ...],
    n_seeds: dict[str, int],
    n_tune: dict[str, int],
    done: set[tuple[str, int, str]],
) -> list[list[dict[str, Any]]]:
    """An earlier run's rows of the methods not run now, on this run's problems and seeds
    (not already kept), grouped by problem and seed."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in old:
        name, seed, method = r["problem"], r["seed"], r["method"]
        limit = (n_tune if method == TUNE else n_seeds).get(name, 0)
        if method not in methods and seed < limit and (name, seed, method) not in done:
            groups.setdefault((name, seed), []).append(r)
    return list(groups.values())


def ray_version() -> str:
    import ray

    return str(ray.__version__)


if __name__ == "__main__":
    main()
