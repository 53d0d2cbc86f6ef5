"""The trainable of tests/assets/v1: completed, failed, diverged and lost-then-retried trials."""

import math
import os
import time
from pathlib import Path


def train(params, *, epochs, seed):
    x, y, lr = params["x"], params["y"], params["lr"]
    marker = Path(params["markers"]) / str(seed)
    dies = x < 0.12 or (x < 0.3 and not marker.exists())  # lost always / once
    marker.touch()
    for epoch in range(1, epochs + 1):
        time.sleep(0.05)
        if dies and epoch == 2:
            time.sleep(0.5)  # epoch 1 reaches the driver first
            os._exit(1)
        if x > 0.78 and epoch == 2:
            raise ValueError(f"x={x:.3f} is too large")
        loss = math.inf if lr > 0.3 and epoch == 2 else (1 - x) / (epoch * lr * 10 + 1)
        acc = 1 - loss + y / 10 if math.isfinite(loss) else math.nan  # best at high y: an edge
        yield {"val_acc": acc, "val_loss": loss}
