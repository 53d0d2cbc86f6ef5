"""Does the first-layer smoothness score separate well-trained from badly-tuned MLPs on digits?

Samples one coarse stage of examples/mlp.toml's space (hpsearch's own sampler, seeded), trains
each configuration for the stage's epochs with a checkpoint, and scores the first layer of
its last checkpoint with `hpsearch.first_layer.total_variation`. Prints the score against
val_acc by quartile of val_acc and the Spearman rank correlation.

    python benchmarks/first_layer.py [--spec examples/mlp.toml] [--trials 60] [--epochs 3]
        [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from hpsearch.first_layer import total_variation
from hpsearch.registry import resolve
from hpsearch.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


def run_trial(module: Any, params: dict, epochs: int, seed: int) -> tuple[float, float] | None:
    """(val_acc of the last epoch, first-layer score), or None when the trial diverged."""
    with tempfile.TemporaryDirectory() as ckpt:
        try:
            metrics = list(module.train(params, epochs=epochs, seed=seed, checkpoint_dir=ckpt))
        except FloatingPointError:
            return None
        images = module.first_layer(params, checkpoint_dir=ckpt)
        return metrics[-1]["val_acc"], total_variation(images)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spec", default="examples/mlp.toml")
    args = parser.parse_args()
    spec = load_spec(ROOT / args.spec)
    module = importlib.import_module(resolve(spec.trainable).__module__)
    rng = np.random.default_rng(args.seed)
    configs = spec.space.sample(args.trials, rng)
    results = [
        run_trial(module, {**spec.fixed, **c}, args.epochs, i) for i, c in enumerate(configs)
    ]
    done = np.array([r for r in results if r is not None])
    acc, score = done[:, 0], done[:, 1]
    rho, p = spearmanr(acc, score)
    print(f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}")
    print(f"{args.spec}: {len(done)} of {args.trials} trials completed "
          f"({args.epochs} epochs, seed {args.seed})")  # fmt: skip
    print("| val_acc quartile | trials | val_acc range | first_layer_tv median [min, max] |")
    print("|---|---:|---|---|")
    edges = np.quantile(acc, [0, 0.25, 0.5, 0.75, 1.0])
    for q in range(4):
        lo, hi = edges[q], edges[q + 1]
        mask = (acc >= lo) & ((acc <= hi) if q == 3 else (acc < hi))
        s = score[mask]
        print(f"| Q{q + 1} | {mask.sum()} | {lo:.3f}–{hi:.3f} | "
              f"{np.median(s):.3f} [{s.min():.3f}, {s.max():.3f}] |")  # fmt: skip
    print(f"Spearman rank correlation of val_acc and first_layer_tv: {rho:.2f} (p = {p:.2g})")


if __name__ == "__main__":
    main()
