"""A small PyTorch MLP on scikit-learn's digits, as a user's own trainable would look.

It imports nothing from hpsearch. `train` yields one dict of metrics per epoch; given a
`checkpoint_dir` it saves the model and optimizer state dicts there before yielding each
epoch, and given a `restore_dir` it continues from such a checkpoint. `predict` and
`first_layer` read a checkpoint back (`weights_only=True`: never unpickles code).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

CHECKPOINT = "model.pt"
PROGRESS = "progress.json"


def _data(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed train/val/test split of digits (300 / 300 held out), scaled to [0, 1]."""
    X, y = load_digits(return_X_y=True)
    X_rest, X_test, y_rest, y_test = train_test_split(X / 16.0, y, test_size=300,
                                                      random_state=0, stratify=y)  # fmt: skip
    X_train, X_val, y_train, y_val = train_test_split(X_rest, y_rest, test_size=300,
                                                      random_state=0, stratify=y_rest)  # fmt: skip
    parts = {"train": (X_train, y_train), "val": (X_val, y_val), "test": (X_test, y_test)}
    X_split, y_split = parts[split]
    return torch.tensor(X_split, dtype=torch.float32), torch.tensor(y_split)


def _model(params: dict[str, Any]) -> torch.nn.Sequential:
    hidden = int(params.get("hidden", 64))
    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(float(params.get("dropout", 0.0))),
        torch.nn.Linear(hidden, 10),
    )


def train(
    params: dict[str, Any],
    *,
    epochs: int,
    seed: int,
    checkpoint_dir: str | None = None,
    restore_dir: str | None = None,
) -> Iterator[dict[str, float]]:
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # small model: one thread per trial beats contention
    model = _model(params)
    opt = torch.optim.Adam(model.parameters(), lr=params["lr"], weight_decay=params["reg"])
    X, y = _data("train")
    X_val, y_val = _data("val")
    first = 1
    if restore_dir is not None:
        state = torch.load(Path(restore_dir) / CHECKPOINT, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        first = json.loads((Path(restore_dir) / PROGRESS).read_text())["epoch"] + 1
    batch = int(params.get("batch", 64))
    for epoch in range(first, epochs + 1):
        model.train()
        order = torch.randperm(len(y))
        total = 0.0
        for start in range(0, len(y), batch):
            idx = order[start : start + batch]
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            scores = model(X_val)
            val_loss = float(torch.nn.functional.cross_entropy(scores, y_val))
            val_acc = float((scores.argmax(dim=1) == y_val).float().mean())
        if checkpoint_dir is not None:
            _save(Path(checkpoint_dir), model, opt, epoch)
        yield {"train_loss": total / len(y), "val_loss": val_loss, "val_acc": val_acc}


def _save(directory: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, epoch: int) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "rng": torch.get_rng_state()}  # fmt: skip
    torch.save(state, directory / CHECKPOINT)
    (directory / PROGRESS).write_text(json.dumps({"epoch": epoch}))


def _load(params: dict[str, Any], checkpoint_dir: str) -> torch.nn.Sequential:
    model = _model(params)
    state = torch.load(Path(checkpoint_dir) / CHECKPOINT, weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()


def predict(
    params: dict[str, Any], *, checkpoint_dir: str, split: str = "val"
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (n x 10) and labels (n) of a split, from a checkpoint."""
    X, y = _data(split)
    with torch.no_grad():
        probs = torch.softmax(_load(params, checkpoint_dir)(X), dim=1)
    return probs.numpy(), y.numpy()


def first_layer(params: dict[str, Any], *, checkpoint_dir: str) -> np.ndarray:
    """The first layer's weights as one 8 x 8 image per hidden unit."""
    weight = _load(params, checkpoint_dir)[0].weight.detach().numpy()
    return weight.reshape(-1, 8, 8)
