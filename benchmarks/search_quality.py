"""Search quality at an equal epoch budget: coarse->fine vs random search vs Optuna.

    python benchmarks/search_quality.py                # everything (about 5 min on 2 CPUs)
    python benchmarks/search_quality.py --seeds 5 --mlp-seeds 0   # a quick look

Problems:
  * Branin (2-D) and Hartmann-6 with every coordinate behind a log-scaled parameter
    (`x = lo + (hi - lo) * position of log10(p) in [L, H]`) and a synthetic learning curve
    `y(x, e) = f(x) + A * exp(-e / tau(x)) + noise`, where tau (2..8 epochs) depends on the
    last coordinate, so slow starters exist and the coarse ranking is not the fine one.
    Two variants each: ranges that contain the optimum ("inside"), and ranges where one
    coordinate's optimum lies beyond the high end ("edge"). Score: regret f(x*) - f_min of
    the chosen configuration (noise-free, converged).
  * The numpy MLP (trainables.mlp) with 3 hidden layers on digits, with wide log ranges for
    lr, reg and the init std. Score: test accuracy of the chosen configuration.

Methods, all with the same total number of epochs:
  * coarse->fine: hpsearch's planner (`hpsearch.planner`: the same parent, proposal, seeds and
    keep-then-sample as `hpsearch fine`, default settings), coarse stage of short trials, fine
    stage of full-length trials on the proposed ranges that re-runs the 3 best coarse
    configurations first (`[fine] keep = 3`, the default);
  * coarse->fine keep=0: the same with every fine configuration sampled (the ablation);
  * coarse->widen->fine: a smaller coarse stage, a second coarse stage on the proposal when
    an edge flag fires, then the fine stage (what `hpsearch coarse --widen` does);
  * random: single-stage random search, every trial full length;
  * optuna-tpe, optuna-random: Optuna 5 samplers with defaults, every trial full length.
The chosen configuration is the trial with the best observed value of the full-length stage.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from multiprocessing import Pool
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from scipy.stats import spearmanr, wilcoxon  # noqa: E402

from hpsearch import planner  # noqa: E402
from hpsearch.asha import RungBoard, Schedule  # noqa: E402
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
    run: Callable[[dict[str, Any], int, int], tuple[list[float], float]]  # curve, final score
    score_name: str  # what `final score` is: regret (lower better) or test_acc


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

    def run(params: dict[str, Any], epochs: int, seed: int) -> tuple[list[float], float]:
        x = [m.to_x(params[n]) for n, m in zip(names, maps, strict=True)]
        final = f(x)
        z = min(max((x[-1] - last[0]) / (last[1] - last[0]), 0.0), 1.0)
        tau = 2.0 * 4.0**z
        rng = np.random.default_rng(seed)
        curve = [
            final + amplitude * math.exp(-e / tau) + noise * rng.standard_normal()
            for e in range(1, epochs + 1)
        ]
        return curve, final - f_min

    return Problem(name, space, Mode.MIN, budget, run, "regret")


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


def mlp_run(params: dict[str, Any], epochs: int, seed: int) -> tuple[list[float], float]:
    """Validation accuracy per epoch and the test accuracy of the trained net."""
    from trainables import mlp
    from trainables._loop import fit, load_data
    from trainables._params import parse_hidden, resolve
    from trainables.models import Net

    cfg = resolve("mlp", {**MLP_FIXED, **params}, mlp.DEFAULTS)
    rng = np.random.default_rng(seed)
    data = load_data(cfg)
    net = Net.create(
        data.n_features,
        data.n_classes,
        hidden=parse_hidden(cfg["hidden"], cfg["depth"]),
        loss_kind="softmax",
        init=cfg["init"],
        dropout=0.0,
        rng=rng,
    )
    curve: list[float] = []
    try:
        for metrics in fit(net, data, cfg, epochs=epochs, rng=rng):
            curve.append(metrics["val_acc"])
    except FloatingPointError:
        return curve, float("nan")  # diverged: no model to test
    scores = net.forward(data.X_test.astype(np.float64)).scores
    return curve, float((scores.argmax(axis=1) == data.y_test).mean())


def mlp_problem() -> Problem:
    space = Space(
        {
            "lr": Numeric("loguniform", 1e-6, 1e1),
            "reg": Numeric("loguniform", 1e-6, 1e1),
            "init": Numeric("loguniform", 1e-4, 1.0),
        }
    )
    return Problem("mlp-digits", space, Mode.MAX, MLP_BUDGET, mlp_run, "test_acc")


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


def run_trials(
    problem: Problem, configs: list[dict[str, Any]], epochs: int, seeds: Sequence[int]
) -> list[Trial]:
    return [Trial(c, *problem.run(c, epochs, int(s))) for c, s in zip(configs, seeds, strict=True)]


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
        out.append(TrialRecord(i, stage_id, i, status, 0, 1, t.params, best_value=value))
    return out


Steps = list[tuple[int, Trial | None]]  # epochs spent, then the trial if it may be chosen


def run_asha(
    problem: Problem,
    configs: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    epochs: int,
    budget: int,
    eta: int = 3,
    grace: int = 1,
) -> list[Trial]:
    """Trials one after another (one worker) under hpsearch's own rung board
    (`hpsearch.asha.RungBoard`, what a stage with `schedule = "asha"` asks), until `budget`
    epochs are spent; a trial the budget cuts short is stopped too."""
    rungs = Schedule("asha", eta, grace).rungs(epochs)
    board = RungBoard(rungs, eta, str(problem.mode), "value")
    trials, spent = [], 0
    for i, (config, seed) in enumerate(zip(configs, seeds, strict=False)):
        if spent >= budget:
            break
        curve, score = problem.run(config, epochs, int(seed))
        ran = len(curve)
        for e, value in enumerate(curve, start=1):
            if not math.isfinite(value):
                ran = e
                break
            if e in rungs and board.report(i, e, value) is not None:
                ran = e
                break
        ran = min(ran, budget - spent)
        spent += ran
        cut = ran < epochs and all(math.isfinite(v) for v in curve[:ran])
        trials.append(Trial(config, curve[:ran], score, stopped=cut))
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


class InMemoryStudy:
    """A study's records held in memory: the planner decides each stage exactly as it does for
    `hpsearch coarse/fine` on a database (parent, proposal, keep-then-sample, seeds)."""

    def __init__(self, problem: Problem, seed: int, keep: int) -> None:
        self.problem = problem
        b = problem.budget
        self.spec = StudySpec(
            path=Path(problem.name),
            name=problem.name,
            trainable="benchmark",
            metric="value",
            mode=Mode(problem.mode),
            space=problem.space,
            coarse=StageSettings(*b.coarse),
            fine=FineSettings(*b.fine, keep=keep),  # top 10, edge 0.1, pad 0.25: the defaults
            seed=seed,
        )
        self.record = StudyRecord(1, problem.name, "benchmark", "value", problem.mode)
        self.stages: list[StageRecord] = []
        self.trials: dict[int, list[TrialRecord]] = {}
        self.flags: list[FlagRecord] = []  # of the latest stage

    def plan(self, request: StageRequest) -> NewStage:
        history = History(self.record, tuple(self.stages), "memory")
        decision = planner.decide(self.spec, request, history)
        assert isinstance(decision, planner.Start)
        parent_trials = self.trials[decision.parent.stage_id] if decision.parent else []
        return planner.new_stage(self.spec, request, history, decision, parent_trials)

    def run(self, request: StageRequest) -> tuple[StageRecord, list[Trial]]:
        """Plan the stage with hpsearch's planner, run its trials, finish it (proposal)."""
        plan = self.plan(request)
        return self._finish(plan, run_trials(self.problem, plan.configs, plan.epochs, plan.seeds))

    def run_on_spec_ranges(self, kind: StageKind, trials: int, epochs: int) -> list[Trial]:
        """The fallback when nothing completed (hpsearch would refuse): sample the spec."""
        seed = self.spec.seed + len(self.stages)
        plan = planner.sample(kind, self.problem.space, trials, epochs, seed)
        return self._finish(plan, run_trials(self.problem, plan.configs, epochs, plan.seeds))[1]

    def _finish(self, plan: NewStage, trials: list[Trial]) -> tuple[StageRecord, list[Trial]]:
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
        )
        analysis = planner.analyze_stage(self.spec, stage, recs)
        stage = replace(stage, proposal=analysis.stored_proposal())
        self.stages.append(stage)
        self.trials[stage_id] = recs
        self.flags = analysis.flags
        return stage, trials


def coarse_fine(
    problem: Problem, rng, *, widen: bool, keep: int, asha: bool = False
) -> tuple[Trial | None, dict]:
    b = problem.budget
    study = InMemoryStudy(problem, int(rng.integers(2**31 - 1)), keep)
    n, e = b.widen_coarse if widen else b.coarse
    first, _ = study.run(StageRequest(StageKind.COARSE, n, e))
    used, widened = n * e, False
    edge_flag = any(f.side in ("low", "high") for f in study.flags)
    if widen and edge_flag and first.proposal is not None:
        study.run(StageRequest(StageKind.COARSE, n, e, widen=True))
        used, widened = used + n * e, True
    n_fine = (b.total - used) // b.fine[1]
    if asha:  # as many fine trials as the rest of the budget allows once ASHA cuts them
        n_fine = b.total - used
    fine = StageRequest(StageKind.FINE, n_fine, b.fine[1])
    try:
        if asha:
            plan = study.plan(fine)
            trials = run_asha(problem, plan.configs, plan.seeds, b.fine[1], b.total - used)
        else:
            _, trials = study.run(fine)
    except NoProposalError:  # no coarse trial completed
        trials = study.run_on_spec_ranges(StageKind.FINE, n_fine, b.fine[1])
    steps: Steps = [(used, None), *steps_of(trials)]
    extra = {"edge_flag": edge_flag, "widened": widened, "trajectory": trajectory(problem, steps)}
    return choose(problem, trials), extra


def single_asha(problem: Problem, rng) -> tuple[Trial | None, dict]:
    """One stage with `schedule = "asha"` on the spec's ranges, full-length epochs."""
    b = problem.budget
    configs = problem.space.sample(b.total, rng)
    trials = run_asha(problem, configs, random_seeds(rng, b.total), b.fine[1], b.total)
    return choose(problem, trials), {"trajectory": trajectory(problem, steps_of(trials))}


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
        curve, score = problem.run(params, b.fine[1], int(rng.integers(2**31 - 1)))
        left = b.total - sum(len(t.curve) for t in trials)
        for epoch, value in enumerate(curve[:left], start=1):
            if not math.isfinite(value):
                break
            ot.report(value, epoch)
            if pruner_name and ot.should_prune():
                trials.append(Trial(params, curve[:epoch], score, stopped=epoch < b.fine[1]))
                raise optuna.TrialPruned()
        trial = Trial(params, curve[:left], score, stopped=left < len(curve))
        trials.append(trial)
        value = trial.best(problem.mode)
        return float("nan") if value is None else value  # optuna marks NaN trials failed

    def out_of_budget(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if sum(len(t.curve) for t in trials) >= b.total:
            study.stop()

    study.optimize(objective, n_trials=b.total, callbacks=[out_of_budget])
    return choose(problem, trials), {"trajectory": trajectory(problem, steps_of(trials))}


METHODS = (
    "coarse->fine",
    "coarse->fine+asha",
    "coarse->fine keep=0",
    "coarse->widen->fine",
    "asha",
    "random",
    "optuna-tpe",
    "optuna-tpe+hyperband",
    "optuna-tpe+median",
    "optuna-random",
)


def one_seed(args: tuple[str, int]) -> list[dict[str, Any]]:
    problem_name, seed = args
    problem = next(p for p in all_problems() if p.name == problem_name)
    rows = []
    for method in METHODS:
        rng = np.random.default_rng([seed, METHODS.index(method)])
        if method.startswith("coarse->"):
            keep = 0 if method.endswith("keep=0") else FineSettings(0, 0).keep
            chosen, extra = coarse_fine(
                problem, rng, widen="widen" in method, keep=keep, asha=method.endswith("asha")
            )
        elif method == "random":
            chosen, extra = single_random(problem, rng)
        elif method == "asha":
            chosen, extra = single_asha(problem, rng)
        else:
            sampler, _, pruner = method.split("-")[1].partition("+")
            chosen, extra = optuna_search(problem, seed, sampler, pruner)
        rows.append(
            {
                "problem": problem.name,
                "seed": seed,
                "method": method,
                "observed": None if chosen is None else chosen.best(problem.mode),
                "score": None if chosen is None else chosen.score,
                **extra,
            }
        )
    return rows


def all_problems() -> list[Problem]:
    return [*synthetic_problems(), mlp_problem()]


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
    lines += ["", *paired_tests(rows, problem)]
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


DEFAULT = "coarse->fine"  # what `hpsearch coarse` + `hpsearch fine` do out of the box


def paired_tests(rows: list[dict[str, Any]], problem: Problem) -> list[str]:
    """Wilcoxon signed-rank test, paired by seed, of hpsearch's default against each rival."""

    def scores(method: str) -> dict[int, float]:
        return {
            r["seed"]: r["score"]
            for r in rows
            if r["problem"] == problem.name and r["method"] == method and r["score"] is not None
        }

    mine = scores(DEFAULT)
    sign = 1.0 if problem.score_name == "regret" else -1.0  # > 0: the default is worse
    lines = [f"Paired by seed, {DEFAULT} against each rival (Wilcoxon signed-rank):"]
    for method in METHODS:
        if method == DEFAULT:
            continue
        theirs = scores(method)
        both = [s for s in mine if s in theirs and math.isfinite(mine[s] + theirs[s])]
        diff = np.array([sign * (mine[s] - theirs[s]) for s in both])
        if len(both) < 5 or not np.any(diff):
            lines.append(f"- vs {method}: too few differing seeds ({len(both)})")
            continue
        p = wilcoxon(diff).pvalue
        lines.append(
            f"- vs {method}: median paired difference {np.median(diff):+.3g} in "
            f"{problem.score_name} (< 0: the default is better), default better in "
            f"{int((diff < 0).sum())} / worse in {int((diff > 0).sum())} of {len(both)} seeds, "
            f"p = {p:.2g}"
        )
    return lines


def plot(rows: list[dict[str, Any]], problem: Problem, out: Path) -> Path:
    """Median over seeds of the chosen trial's score against the epochs spent, per method."""
    from matplotlib.figure import Figure

    total = problem.budget.total
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
        ax.plot(grid, median, style, color=f"C{i}", label=method)
    ax.set_xlabel("epochs spent")
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
    parser.add_argument("--mlp-seeds", type=int, default=6, help="seeds of the MLP problem")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plots", help="directory for a PNG per problem (e.g. docs)")
    args = parser.parse_args()
    started = time.monotonic()
    problems = all_problems()
    jobs = [(p.name, s) for p in problems[:-1] for s in range(args.seeds)]
    jobs = [("mlp-digits", s) for s in range(args.mlp_seeds)] + jobs
    with Pool(args.workers) as pool:
        rows = [r for batch in pool.imap_unordered(one_seed, jobs) for r in batch]
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, numpy {np.__version__}, optuna {optuna.__version__}"
    )
    print(f"Command: python {' '.join(sys.argv)}  ({time.monotonic() - started:.0f} s)\n")
    for problem in problems:
        if any(r["problem"] == problem.name for r in rows):
            print("\n".join(summarize(rows, problem)), "\n")
            if args.plots:
                print(f"picture: {plot(rows, problem, Path(args.plots))}\n")


if __name__ == "__main__":
    main()
