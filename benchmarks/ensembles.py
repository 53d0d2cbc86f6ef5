"""Do ensembles beat the best single model? Test accuracy of the best trial of a search
against each ensemble kind of size 5, median over search seeds, with the cost in epochs.

Each search seed runs one study in its own SQLite file: a coarse stage and a fine stage of the
built-in `mlp` on digits trained on a small subset (`train_rows`, so single models vary), every
trial in this process (`executor="local"`: no Ray, nothing else competes for the cores). Then:

- single: the fine stage's best trial by validation accuracy, at its chosen checkpoint;
- top: the fine stage's best 5 trials' checkpoints (no training);
- checkpoints: the best 5 kept epochs of that best trial (no training);
- seeds: the best configuration trained again with 5 new seeds (5 x the fine epochs).

All on the test split, which no choice looked at. Run:

    python benchmarks/ensembles.py --seeds 20 --out /tmp/ensembles.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hpsearch.api import Study  # noqa: E402

KINDS = ("top", "checkpoints", "seeds")
SIZE = 5


def spec(
    seed: int, train_rows: int, coarse: tuple[int, int], fine: tuple[int, int]
) -> dict[str, Any]:
    return {
        "name": f"ens-{seed}",
        "trainable": "mlp",
        "metric": "val_acc",
        "mode": "max",
        "seed": seed,
        "fixed": {"data": "digits", "train_rows": train_rows, "update": "adam", "batch": 50},
        "space": {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
            "reg": {"type": "loguniform", "low": 1e-6, "high": 1e-1},
            "hidden": {"type": "lograndint", "low": 16, "high": 256},
            "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
        },
        "coarse": {"trials": coarse[0], "epochs": coarse[1]},
        "fine": {"trials": fine[0], "epochs": fine[1], "top": 5},
        "checkpoints": {"keep_trials": SIZE, "keep_epochs": SIZE},
    }


def one_search(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One study: coarse, fine, then each ensemble kind on the test split."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        study = Study.from_spec(
            spec(seed, args.train_rows, (args.coarse_trials, args.coarse_epochs),
                 (args.fine_trials, args.fine_epochs)),
            db=str(Path(tmp) / "h.db"),
        )  # fmt: skip
        study.coarse(executor="local")
        fine = study.fine(executor="local")
        row: dict[str, Any] = {"seed": seed, "fine_stage": fine.stage_id}
        for kind in KINDS:
            result = study.ensemble(kind, size=SIZE, split="test", stage=fine.stage_id,
                                    executor="local")  # fmt: skip
            row[kind] = result.accuracy
            row[f"{kind}_members"] = len(result.members)
            if kind == "top":  # members best first by validation: the first is the single best
                row["single"] = result.members[0].accuracy
        study.close()
        row["seconds"] = time.perf_counter() - started
    return row


def summarize(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    search_epochs = args.coarse_trials * args.coarse_epochs + args.fine_trials * args.fine_epochs
    extra = {"single": 0, "top": 0, "checkpoints": 0, "seeds": SIZE * args.fine_epochs}
    out: dict[str, Any] = {"searches": len(rows), "search_epochs": search_epochs, "kinds": {}}
    for kind in ("single", *KINDS):
        accs = [r[kind] for r in rows]
        gains = [100 * (r[kind] - r["single"]) for r in rows]
        out["kinds"][kind] = {
            "median_test_acc": statistics.median(accs),
            "median_gain_points": statistics.median(gains),
            "wins": sum(g > 0 for g in gains),
            "losses": sum(g < 0 for g in gains),
            "extra_epochs": extra[kind],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="search seeds (studies)")
    parser.add_argument("--train-rows", type=int, default=300)
    parser.add_argument("--coarse-trials", type=int, default=30)
    parser.add_argument("--coarse-epochs", type=int, default=3)
    parser.add_argument("--fine-trials", type=int, default=15)
    parser.add_argument("--fine-epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None, help="write rows and summary as JSON")
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        rows.append(one_search(seed, args))
        r = rows[-1]
        print(f"seed {seed}: single {r['single']:.4f} "
              + " ".join(f"{k} {r[k]:.4f}" for k in KINDS)
              + f" ({r['seconds']:.0f}s)", flush=True)  # fmt: skip
    summary = summarize(rows, args)
    print(f"{summary['searches']} searches, {summary['search_epochs']} epochs each")
    print(f"{'kind':<12} {'median test acc':>15} {'median gain (pt)':>16} {'wins':>5} "
          f"{'losses':>6} {'extra epochs':>12}")  # fmt: skip
    for kind, k in summary["kinds"].items():
        print(f"{kind:<12} {k['median_test_acc']:>15.4f} {k['median_gain_points']:>+16.2f} "
              f"{k['wins']:>5} {k['losses']:>6} {k['extra_epochs']:>12}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "rows": rows, "summary": summary}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
