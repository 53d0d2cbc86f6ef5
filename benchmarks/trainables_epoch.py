"""MLP epoch time vs. the same matrix multiplies alone, BLAS pinned to 1 thread.

Run: python benchmarks/trainables_epoch.py
For each dataset it times full epochs of ``trainables.mlp`` (the ``seconds`` metric: training
steps plus the validation pass) and the bare matmuls one epoch needs with the same shapes
(per step: X@W1, h@W2, dscores@W2.T, h.T@dscores, X.T@dh; then the validation forward),
and prints a markdown table. Workers of hpsearch pin BLAS threads to 1 the same way.
"""

from __future__ import annotations

import platform
import statistics
import time

import numpy as np
import sklearn
from threadpoolctl import threadpool_info, threadpool_limits

from trainables import mlp
from trainables.data import load_digits, load_synthetic

HIDDEN, BATCH, EPOCHS, REPEATS = 100, 100, 5, 3
CASES = [
    ("digits", {"data": "digits"}, load_digits),
    ("synthetic 20k", {"data": "synthetic", "rows": 20000}, load_synthetic),
]


def epoch_seconds(params: dict) -> float:
    """Median ``seconds`` over the epochs after the first (data already cached)."""
    times = []
    for seed in range(REPEATS):
        history = list(mlp.train(params, epochs=EPOCHS, seed=seed))
        times += [m["seconds"] for m in history[1:]]
    return statistics.median(times)


def matmul_seconds(n_train: int, n_val: int, d: int, c: int) -> float:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BATCH, d))
    W1, W2 = rng.standard_normal((d, HIDDEN)), rng.standard_normal((HIDDEN, c))
    X_val = rng.standard_normal((n_val, d))
    times = []
    for _ in range(REPEATS * (EPOCHS - 1)):
        start = time.perf_counter()
        for _ in range(0, n_train, BATCH):
            h = X @ W1
            s = h @ W2
            dh = s @ W2.T
            _ = h.T @ s
            _ = X.T @ dh
        _ = (X_val @ W1) @ W2
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        platform.processor(),
    )
    print(f"machine: {cpu}, nproc {len(__import__('os').sched_getaffinity(0))}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, sklearn {sklearn.__version__}"
    )
    with threadpool_limits(1):
        blas = ", ".join(
            f"{i['internal_api']} {i['version']} ({i['num_threads']} thread)"
            for i in threadpool_info()
        )
        print(f"BLAS: {blas}")
        print(f"mlp: hidden={HIDDEN}, batch={BATCH}, update=adam, float64\n")
        print("| dataset | train rows | features | epoch (ms) | matmuls alone (ms) | ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, data_params, loader in CASES:
            ds = loader()
            params = {**data_params, "hidden": HIDDEN, "batch": BATCH}
            epoch = epoch_seconds(params)
            mm = matmul_seconds(len(ds.y_train), len(ds.y_val), ds.n_features, ds.n_classes)
            print(
                f"| {label} | {len(ds.y_train)} | {ds.n_features} | {epoch * 1e3:.1f} "
                f"| {mm * 1e3:.1f} | {epoch / mm:.2f} |"
            )


if __name__ == "__main__":
    main()
