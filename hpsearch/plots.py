"""Figures a practitioner looks at after a stage (matplotlib, no pyplot: no global state).

`build_figures` returns Figure objects by file name (plus notes on plots it skipped), so
tests check titles, axes and legends; `save_figures` writes them as PNGs.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hpsearch.first_layer import SCORE_METRIC, tile, total_variation
from hpsearch.ranking import sample_every
from hpsearch.space import Numeric, dimension_from_dict
from storage import Mode, StageRecord, Status, StudyRecord, load_metrics, load_stages, load_trials

UPDATE_RATIO_TARGET = 1e-3
PLOT_TRIALS = 10_000  # a larger study's scatter plots show a uniform sample of about this many


@dataclass(frozen=True)
class PlotData:
    study: StudyRecord
    stages: list[StageRecord]
    trials: pd.DataFrame  # load_trials
    metrics: pd.DataFrame  # load_metrics of the top trials only
    top: list[int]  # trial_ids, best first
    every: int = 1  # trials shows every `every`-th trial of each stage (and the top ones)


def load_plot_data(db: str, study: StudyRecord, top: int) -> PlotData:
    """The study's stages, its best `top` trials and their metric rows, and its trials: all of
    them up to PLOT_TRIALS, else every k-th trial of each stage (`sample_every`), so a plot
    costs the same at any study size."""
    stages = load_stages(db, study.name)
    every = sample_every(sum(s.n_trials for s in stages), PLOT_TRIALS)
    best = load_trials(db, study.name, top=top)
    trials = load_trials(db, study.name, every=every)
    if every > 1:
        extra = best[~best["trial_id"].isin(trials["trial_id"])]
        trials = pd.concat([trials, extra]).sort_values(["stage_id", "trial"], ignore_index=True)
    ids = [int(i) for i in best["trial_id"]]
    metrics = load_metrics(db, study.name, trial_ids=ids)
    return PlotData(study, stages, trials, metrics, ids, every)


def _stage_label(stage: StageRecord) -> str:
    return f"{stage.kind} (stage {stage.stage_id})"


def _numeric_params(stages: list[StageRecord]) -> dict[str, Numeric]:
    """Numeric parameters by name, typed by the latest stage that samples them."""
    found: dict[str, Numeric] = {}
    for stage in stages:
        for name, spec in stage.ranges.items():
            dim = dimension_from_dict(spec)
            if isinstance(dim, Numeric):
                found[name] = dim
    return found


def param_figure(data: PlotData, name: str, dim: Numeric) -> Figure:
    """The metric against one parameter: stages in colours, their ranges, the best trial."""
    metric = data.study.metric
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    colours = [f"C{i}" for i in range(10)]
    for i, stage in enumerate(data.stages):
        rows = data.trials[(data.trials["stage_id"] == stage.stage_id)]
        rows = rows[rows["best_value"].notna() & rows[name].notna()] if name in rows else rows[:0]
        colour = colours[i % len(colours)]
        cut = rows["status"] == Status.STOPPED  # stopped by ASHA: their value is an early one
        ax.scatter(
            rows[~cut][name].astype(float),
            rows[~cut]["best_value"],
            s=18,
            alpha=0.7,
            color=colour,
            label=_scatter_label(data, stage, len(rows)) + _stopped_note(int(cut.sum())),
        )
        if cut.any():
            ax.scatter(
                rows[cut][name].astype(float),
                rows[cut]["best_value"],
                s=18,
                marker="x",
                alpha=0.5,
                color=colour,
            )
        edges = stage.ranges.get(name)
        if edges and "low" in edges:
            for edge in (edges["low"], edges["high"]):
                ax.axvline(edge, color=colour, linestyle="--", linewidth=1)
    best = data.trials[data.trials["trial_id"] == data.top[0]] if data.top else data.trials[:0]
    if len(best) and name in best and best[name].notna().all():
        ax.scatter(
            best[name].astype(float),
            best["best_value"],
            marker="*",
            s=220,
            color="black",
            zorder=5,
            label=f"best: {_trial_label(data, data.top[0])}",
        )
    if dim.is_log:
        ax.set_xscale("log")
    ax.set_title(f"{metric} vs {name} (dashed: stage ranges)")
    ax.set_xlabel(f"{name} ({'log' if dim.is_log else 'linear'} scale)")
    ax.set_ylabel(f"best {metric} per trial")
    ax.legend(fontsize="small")
    return fig


def _scatter_label(data: PlotData, stage: StageRecord, shown: int) -> str:
    if data.every == 1:
        return f"{_stage_label(stage)}: {shown} trials"
    return f"{_stage_label(stage)}: {shown} trials shown (every {data.every}th and the best)"


def _stopped_note(stopped: int) -> str:
    return f" ({stopped} stopped early by ASHA: x)" if stopped else ""


def _curves(data: PlotData, name: str) -> dict[int, pd.Series]:
    """Per top trial: the metric `name` by epoch (trials without it left out)."""
    rows = data.metrics[data.metrics["name"] == name]
    by_trial = {tid: g.set_index("epoch")["value"] for tid, g in rows.groupby("trial_id")}
    return {tid: by_trial[tid] for tid in data.top if tid in by_trial}


def _trial_label(data: PlotData, trial_id: int) -> str:
    row = data.trials[data.trials["trial_id"] == trial_id].iloc[0]
    return f"trial {int(row['trial'])} ({row['stage_kind']} {int(row['stage_id'])})"


def learning_curves(data: PlotData) -> Figure | None:
    metric = data.study.metric
    curves = _curves(data, metric)
    if not curves:
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for tid, curve in curves.items():
        ax.plot(curve.index, curve.values, marker=".", label=_trial_label(data, tid))
    ax.set_title(f"Learning curves of the top {len(curves)} trials")
    _epoch_axis(ax)
    ax.set_ylabel(metric)
    ax.legend(fontsize="x-small")
    return fig


def gap_figure(data: PlotData) -> Figure | None:
    """Train minus validation accuracy: a growing gap means overfitting."""
    train, val = _curves(data, "train_acc"), _curves(data, "val_acc")
    common = [tid for tid in train if tid in val]
    if not common:
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for tid in common:
        gap = (train[tid] - val[tid]).dropna()
        ax.plot(gap.index, gap.values, marker=".", label=_trial_label(data, tid))
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set_title(f"Train - validation accuracy gap (top {len(common)} trials)")
    _epoch_axis(ax)
    ax.set_ylabel("train_acc - val_acc")
    ax.legend(fontsize="x-small")
    return fig


def _layers(data: PlotData, prefix: str) -> list[str]:
    names = data.metrics["name"].astype(str).unique() if len(data.metrics) else []
    return sorted(n for n in names if n.startswith(prefix))


def per_layer_figure(data: PlotData, prefix: str) -> Figure | None:
    """`update_ratio/*` (log y, with the 1e-3 rule of thumb) or `act_std/*` of the best trial."""
    layers = _layers(data, prefix)
    if not layers or not data.top:
        return None
    best = data.top[0]
    rows = data.metrics[data.metrics["trial_id"] == best]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for layer in layers:
        curve = rows[rows["name"] == layer]
        ax.plot(curve["epoch"], curve["value"], marker=".", label=layer.split("/", 1)[1])
    _epoch_axis(ax)
    if prefix == "update_ratio/":
        ax.set_yscale("log")
        ax.axhline(UPDATE_RATIO_TARGET, color="black", linestyle="--", label="1e-3")
        ax.set_title(f"Update/param ratio per layer, best trial ({_trial_label(data, best)})")
        ax.set_ylabel("|update| / |param|")
    else:
        ax.set_title(f"Activation std per layer, best trial ({_trial_label(data, best)})")
        ax.set_ylabel("std of activations")
    ax.legend(fontsize="small")
    return fig


def _epoch_axis(ax: Any) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def build_figures(data: PlotData) -> tuple[dict[str, Figure], list[str]]:
    """All figures by PNG file name, and a note for each plot skipped (missing metrics)."""
    figures: dict[str, Figure] = {}
    notes: list[str] = []
    metric = data.study.metric
    if not data.top:
        notes.append(f"no completed trial with a {metric} value: only parameter plots drawn")
    for name, dim in _numeric_params(data.stages).items():
        figures[f"{_file_part(metric)}_vs_{_file_part(name)}.png"] = param_figure(data, name, dim)
    optional: list[tuple[str, Figure | None, str]] = [
        ("learning_curves.png", learning_curves(data), f"no {metric} per epoch"),
        ("train_val_gap.png", gap_figure(data), "no train_acc and val_acc metrics"),
        ("update_ratio.png", per_layer_figure(data, "update_ratio/"), "no update_ratio/* metrics"),
        ("act_std.png", per_layer_figure(data, "act_std/"), "no act_std/* metrics"),
    ]
    for file, fig, why in optional:
        if fig is None:
            notes.append(f"skipped {file}: {why} in the top trials")
        else:
            figures[file] = fig
    return figures, notes


def save_figures(figures: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file, fig in figures.items():
        path = out / file
        fig.savefig(path, dpi=100, bbox_inches="tight")
        written.append(path)
    return written


@dataclass(frozen=True)
class Panel:
    """One trial's first layer, with the caption it is shown under."""

    filters: np.ndarray
    caption: str


def first_layer_figure(panels: list[Panel]) -> Figure:
    """The panels side by side (the recipe's "good vs bad" picture), each with its score."""
    fig = Figure(figsize=(4.5 * len(panels), 5))
    for i, panel in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        grid = tile(panel.filters)
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
        score = total_variation(panel.filters)
        ax.set_title(f"{panel.caption}\n{SCORE_METRIC} {score:.3f}", fontsize="small")
        ax.set_axis_off()
    return fig


def first_layer_panels(
    db: str, study: StudyRecord, trial_id: int | None = None, search_path: Path | None = None
) -> list[Panel]:
    """The first layer of the best trial's chosen checkpoint beside the worst completed trial's
    latest one in the same stage; with `trial_id`, that trial's latest checkpoint alone.
    HpsearchError (one line) when there is no kept checkpoint or no `first_layer`."""
    from hpsearch.errors import HpsearchError
    from hpsearch.first_layer import first_layer_of
    from hpsearch.registry import resolve
    from storage import load_best_checkpoint, load_trial_checkpoints

    drawing = first_layer_of(resolve(study.trainable, search_path))
    if drawing is None:
        raise HpsearchError(
            f"trainable {study.trainable!r}: its module has no first_layer(params, "
            "checkpoint_dir=...) to draw"
        )
    stages = {s.stage_id: s for s in load_stages(db, study.name)}
    if trial_id is not None:
        found = load_trial_checkpoints(db, study, trial_id=trial_id)
        if not found:
            raise HpsearchError(
                f"--trial {trial_id}: study {study.name!r} has no kept checkpoint of that trial"
            )
        return [_panel(drawing, stages, study, found[0], "trial")]
    best = load_best_checkpoint(db, study, list(stages.values()), None)
    trials = load_trial_checkpoints(db, study, stage_id=best.stage.stage_id)
    chosen = [t for t in trials if t.trial_id == best.trial_id][0]
    chosen = replace(chosen, epoch=best.epoch, files=best.files)  # its best kept epoch
    others = [t for t in trials if t.trial_id != best.trial_id and t.best_value is not None]
    panels = [_panel(drawing, stages, study, chosen, "best")]
    if others:
        worst = Mode(study.mode).best_first(others, lambda t: float(t.best_value or 0))[-1]
        panels.append(_panel(drawing, stages, study, worst, "poor"))
    return panels


def _panel(
    drawing: Any, stages: dict[int, StageRecord], study: StudyRecord, trial: Any, label: str
) -> Panel:
    import tempfile

    from hpsearch.space import Space
    from storage import read_files

    stage = stages[trial.stage_id]
    params = {**stage.fixed, **Space.from_dict(stage.ranges).typed(trial.params)}
    with tempfile.TemporaryDirectory(prefix="hpsearch-first-layer-") as directory:
        for name, data in read_files(trial.files).items():
            (Path(directory) / name).write_bytes(data)
        filters = np.asarray(drawing(params, checkpoint_dir=directory))
    shown = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    value = "–" if trial.best_value is None else f"{trial.best_value:.4g}"
    caption = (
        f"{label}: trial {trial.trial} of stage {stage.stage_id} ({trial.status}), "
        f"epoch {trial.epoch}\n{study.metric} {value}\n{textwrap.fill(shown, 60)}"
    )
    return Panel(filters, caption)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
