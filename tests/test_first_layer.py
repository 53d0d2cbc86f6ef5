"""First-layer pictures: the tiled grid of a known array, and the smoothness score's order."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path  # noqa: E402

import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import storage  # noqa: E402
from hpsearch.errors import HpsearchError  # noqa: E402
from hpsearch.first_layer import SCORE_METRIC, normalized, tile, total_variation  # noqa: E402
from hpsearch.plots import Panel, first_layer_figure, first_layer_panels  # noqa: E402
from tests.conftest import query, run_cli  # noqa: E402


def test_tile_places_each_normalized_filter_in_a_near_square_grid() -> None:
    filters = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)  # 5 filters of 2 x 3
    grid = tile(filters)
    assert grid.shape == (2 * 2 + 1, 3 * 3 + 2)  # 2 rows x 3 columns, 1-pixel gaps
    expected = (filters[4] - filters[4].min()) / np.ptp(filters[4])
    assert np.array_equal(grid[3:5, 4:7], expected)  # the 5th filter: row 1, column 1
    assert np.isnan(grid[2]).all() and np.isnan(grid[:, 3]).all()  # the gaps
    assert np.isnan(grid[3:5, 8:11]).all()  # the empty 6th slot


def test_colour_filters_keep_their_channels() -> None:
    assert tile(np.random.default_rng(0).random((4, 5, 5, 3))).shape == (11, 11, 3)


def test_smooth_filters_score_lower_than_noisy_ones() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:8, 0:8]
    centres = rng.uniform(1, 7, size=(20, 2))
    smooth = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8) for cy, cx in centres])
    noisy = rng.standard_normal((20, 8, 8))
    half = 0.5 * normalized(smooth) + 0.5 * normalized(noisy)
    scores = [total_variation(f) for f in (smooth, half, noisy)]
    assert scores == sorted(scores) and scores[2] > 2 * scores[0]
    assert total_variation(smooth * 1000 + 5) == pytest.approx(scores[0])  # scale-free
    assert np.all(normalized(np.ones((2, 8, 8))) == 0)  # a flat filter does not divide by 0


def test_figure_shows_each_panel_with_its_score() -> None:
    rng = np.random.default_rng(1)
    good, bad = rng.random((9, 8, 8)), rng.random((9, 8, 8))
    fig = first_layer_figure([Panel(good, "best: trial 3"), Panel(bad, "poor: trial 9")])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("best: trial 3") and f"{total_variation(good):.3f}" in titles[0]
    assert titles[1].startswith("poor: trial 9")


def test_plot_draws_the_best_and_a_poor_trials_first_layer_from_their_checkpoints(
    tmp_path: Path,
) -> None:
    """A tiny digits stage keeps checkpoints (in-process, no Ray): each checkpoint's epoch has
    its first-layer score in SQL, and `hpsearch plot` draws the grids from the kept files."""
    import hpsearch

    db = str(tmp_path / "h.db")
    spec = {
        "name": "fl-digits", "trainable": "softmax", "metric": "val_acc", "mode": "max",
        "seed": 0, "fixed": {"batch": 100, "update": "adam"},
        "space": {"lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1}},
        "coarse": {"trials": 4, "epochs": 2}, "checkpoints": {"keep_trials": 4},
    }  # fmt: skip
    hpsearch.Study.from_spec(spec, db=db).coarse(executor="local")
    scored = query(Path(db), f"SELECT count(*), min(value), max(value) FROM metrics "
                             f"WHERE name = '{SCORE_METRIC}'")[0]  # fmt: skip
    assert scored[0] == 4 * 2 and 0 < scored[1] <= scored[2] < 1  # every checkpoint's epoch
    best, worst = query(Path(db), "SELECT max(best_value), min(best_value) FROM trials")[0]

    done = run_cli("plot", "fl-digits", "--db", db, "--out", str(tmp_path / "png"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    image = matplotlib.image.imread(tmp_path / "png" / "first_layer.png")
    assert image.shape[1] > 1.5 * image.shape[0]  # two grids side by side
    study = storage.find_study(db, "fl-digits")
    poorest = query(Path(db), "SELECT trial_id FROM trials ORDER BY best_value LIMIT 1")[0][0]
    (alone,) = first_layer_panels(db, study, trial_id=poorest)  # what --trial ID draws
    assert alone.filters.shape == (10, 8, 8) and alone.caption.startswith("trial: trial ")
    with pytest.raises(HpsearchError, match="^--trial 999: study 'fl-digits' has no kept"):
        first_layer_panels(db, study, trial_id=999)  # the CLI's one line, exit 2
    assert best > worst
