"""`hpsearch plot`: titles, axes, scales and legends (matplotlib objects, not pixels)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from hpsearch import plots  # noqa: E402
from storage import find_study  # noqa: E402
from tests._results_db import FINE_RANGES, SPEC, shared_study_db  # noqa: E402
from tests.conftest import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_study_db(tmp_path_factory)


@pytest.fixture(scope="module")
def data(study_db: str) -> plots.PlotData:
    return plots.load_plot_data(str(study_db), find_study(str(study_db), "digits-mlp"), 5)


def legend_texts(ax) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.get_text() for t in ax.get_legend().get_texts()]


def vertical_lines(ax) -> set[float]:  # type: ignore[no-untyped-def]
    return {line.get_xdata()[0] for line in ax.get_lines() if len(set(line.get_xdata())) == 1}


def test_metric_vs_each_numeric_parameter(data: plots.PlotData) -> None:
    figures, notes = plots.build_figures(data)
    assert {"val_acc_vs_lr.png", "val_acc_vs_reg.png", "val_acc_vs_batch.png"} <= set(figures)
    assert not any("update" in f for f in figures if f.startswith("val_acc_vs"))  # a choice
    ax = figures["val_acc_vs_lr.png"].axes[0]
    assert ax.get_title() == "val_acc vs lr (dashed: stage ranges)"
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "lr (log scale)"
    assert ax.get_ylabel() == "best val_acc per trial"
    texts = legend_texts(ax)
    assert texts[0].startswith("coarse (stage 1)") and texts[1].startswith("fine (stage 2)")
    best = data.trials.set_index("trial_id").loc[data.top[0]]
    assert texts[2] == f"best: trial {best['trial']} ({best['stage_kind']} {best['stage_id']})"
    assert vertical_lines(ax) == {1e-4, 3.0, FINE_RANGES["lr"]["low"], FINE_RANGES["lr"]["high"]}
    assert figures["val_acc_vs_batch.png"].axes[0].get_xscale() == "log"  # lograndint
    assert "bogus" in SPEC and notes == []


def test_curves_gap_update_ratio_and_activations(data: plots.PlotData) -> None:
    figures, _ = plots.build_figures(data)
    curves = figures["learning_curves.png"].axes[0]
    assert curves.get_title() == "Learning curves of the top 5 trials"
    assert (curves.get_xlabel(), curves.get_ylabel()) == ("epoch", "val_acc")
    assert len(curves.get_lines()) == 5 and len(legend_texts(curves)) == 5
    gap = figures["train_val_gap.png"].axes[0]
    assert gap.get_ylabel() == "train_acc - val_acc" and gap.get_title().startswith("Train - val")
    ratio = figures["update_ratio.png"].axes[0]
    assert ratio.get_yscale() == "log" and ratio.get_title().startswith("Update/param ratio")
    assert legend_texts(ratio) == ["W1", "W2", "1e-3"]
    assert any(list(line.get_ydata()) == [1e-3, 1e-3] for line in ratio.get_lines())
    act = figures["act_std.png"].axes[0]
    assert act.get_title().startswith("Activation std per layer")
    assert legend_texts(act) == ["h1"] and act.get_ylabel() == "std of activations"


def test_plots_without_diagnostics_are_skipped_with_a_note(data: plots.PlotData) -> None:
    names = data.metrics["name"].astype(str)
    only_val = replace(data, metrics=data.metrics[names == "val_acc"])
    figures, notes = plots.build_figures(only_val)
    assert "learning_curves.png" in figures
    for skipped in ("train_val_gap.png", "update_ratio.png", "act_std.png"):
        assert skipped not in figures
        assert any(n.startswith(f"skipped {skipped}: no ") for n in notes), notes


def test_plot_command_writes_pngs(study_db: str, tmp_path: Path) -> None:
    done = run_cli("plot", "digits-mlp", "--db", str(study_db), "--out", "figs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert written == sorted(
        ["act_std.png", "learning_curves.png", "train_val_gap.png", "update_ratio.png"]
        + [f"val_acc_vs_{p}.png" for p in ("batch", "lr", "reg")]
    )
    assert all((tmp_path / "figs" / f).read_bytes()[:4] == b"\x89PNG" for f in written)


def test_stopped_trials_are_counted_and_drawn_as_x(data: plots.PlotData) -> None:
    trials = data.trials.copy()
    coarse = trials.index[(trials["stage_kind"] == "coarse") & trials["best_value"].notna()]
    trials.loc[coarse[:2], "status"] = "stopped"
    figures, _ = plots.build_figures(replace(data, trials=trials))
    ax = figures["val_acc_vs_lr.png"].axes[0]
    assert legend_texts(ax)[0].endswith("trials (2 stopped early by ASHA: x)")
    stopped = trials.loc[coarse[:2], "lr"].astype(float).tolist()
    crosses = [list(c.get_offsets()[:, 0]) for c in ax.collections if len(c.get_offsets()) == 2]
    assert sorted(stopped) in [sorted(x) for x in crosses]


def test_a_large_study_plots_a_uniform_sample_and_every_top_trial(
    study_db: str, data: plots.PlotData, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = sum(s.n_trials for s in data.stages)
    monkeypatch.setattr(plots, "PLOT_TRIALS", total // 3)
    sample = plots.load_plot_data(study_db, data.study, 5)
    every = sample.every
    assert every >= 3 and sample.top == data.top  # the top ranked on every trial, in SQL
    sampled = data.trials[data.trials["trial"] % every == 0]["trial_id"]
    assert set(sample.trials["trial_id"]) == set(sampled) | set(data.top)
    figures, _ = plots.build_figures(sample)
    texts = legend_texts(figures["val_acc_vs_lr.png"].axes[0])
    shown = sample.trials[sample.trials["stage_id"] == sample.stages[0].stage_id]
    shown = shown[shown["best_value"].notna() & shown["lr"].notna()]
    assert texts[0] == (
        f"coarse (stage 1): {len(shown)} trials shown (every {every}th and the best)"
    )
