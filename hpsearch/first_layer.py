"""First-layer weights as pictures, and how smooth they are (the recipe's §3.5 check).

Smooth, distinct filters say training went well; noisy, "muddy" ones say the learning rate or
the regularization is off. The score is the mean total variation of each filter after
scaling it to [0, 1] on its own: about 0.1 for smooth templates, 0.3 and more for noise.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

SCORE_METRIC = "first_layer_tv"
FirstLayer = Callable[
    ..., np.ndarray
]  # first_layer(params, *, checkpoint_dir) -> (units, H, W[, C])


def first_layer_of(fn: Callable[..., Any]) -> FirstLayer | None:
    """The `first_layer` function of the trainable's module, if it has one."""
    module = importlib.import_module(getattr(fn, "__module__", "") or "__main__")
    found = getattr(module, "first_layer", None)
    return found if callable(found) else None


def checkpoint_score(
    first_layer: FirstLayer, params: dict[str, Any], checkpoint_dir: str
) -> float | None:
    """`total_variation` of a checkpoint's first layer; None when the trainable cannot draw
    it (its features are not images, say): the score is a help, never a reason to fail."""
    try:
        score = total_variation(
            np.asarray(first_layer(dict(params), checkpoint_dir=checkpoint_dir))
        )
    except Exception:
        return None
    return score if math.isfinite(score) else None


def normalized(filters: np.ndarray) -> np.ndarray:
    """Each filter scaled to [0, 1] by its own minimum and maximum (a flat filter becomes 0)."""
    flat = filters.reshape(len(filters), -1)
    low = flat.min(axis=1)
    span = flat.max(axis=1) - low
    span[span == 0] = 1.0
    shape = (len(filters),) + (1,) * (filters.ndim - 1)
    scaled: np.ndarray = (filters - low.reshape(shape)) / span.reshape(shape)
    return scaled


def total_variation(filters: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels of the normalized filters."""
    if len(filters) == 0:
        return math.nan
    images = normalized(filters)
    down = np.abs(np.diff(images, axis=1)).mean()
    right = np.abs(np.diff(images, axis=2)).mean()
    return float((down + right) / 2)


def tile(filters: np.ndarray, gap: int = 1) -> np.ndarray:
    """The normalized filters side by side in a near-square grid, `gap` pixels apart (NaN)."""
    n, height, width = filters.shape[:3]
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    shape = (rows * (height + gap) - gap, columns * (width + gap) - gap, *filters.shape[3:])
    grid = np.full(shape, np.nan)
    for i, image in enumerate(normalized(filters)):
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        grid[top : top + height, left : left + width] = image
    return grid
