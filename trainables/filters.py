"""First-layer weights as images, and how smooth they are (the recipe's §3.5 check).

Smooth, distinct filters say training went well; noisy ones say the learning rate or the
regularization is off. The score is the mean total variation of each filter after scaling it
to [0, 1] on its own: about 0.1 for smooth templates, 0.3 and more for noise.
"""

from __future__ import annotations

import numpy as np

from trainables.data import as_images
from trainables.models import Net


def first_layer_images(net: Net, data_name: str) -> np.ndarray | None:
    """One image per first-layer unit ``(units, H, W[, C])``, or None for non-image data."""
    first = net.weight_names[0]
    return as_images(net.params[first].T, data_name)


def normalized(filters: np.ndarray) -> np.ndarray:
    """Each filter scaled to [0, 1] by its own minimum and maximum (a flat filter becomes 0)."""
    flat = filters.reshape(len(filters), -1)
    low = flat.min(axis=1)
    span = flat.max(axis=1) - low
    span[span == 0] = 1.0
    shape = (len(filters),) + (1,) * (filters.ndim - 1)
    return (filters - low.reshape(shape)) / span.reshape(shape)


def total_variation(filters: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels of the normalized filters."""
    if len(filters) == 0:
        return float("nan")
    images = normalized(filters)
    down = np.abs(np.diff(images, axis=1)).mean()
    right = np.abs(np.diff(images, axis=2)).mean()
    return float((down + right) / 2)
