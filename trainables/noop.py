"""A trainable that does no work: for measuring hpsearch's own per-trial cost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def train(params: dict[str, Any], *, epochs: int, seed: int) -> Iterator[dict[str, float]]:
    """Yields 4 metrics per epoch, derived from `x` (default 1.0) so trials differ."""
    x = float(params.get("x", 1.0))
    for epoch in range(1, epochs + 1):
        loss = x / epoch
        yield {"train_loss": loss, "val_loss": loss * 1.1, "val_acc": 1 / (1 + loss), "lr": x}
