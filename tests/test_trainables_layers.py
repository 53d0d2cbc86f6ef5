"""`trainables` imports numpy and scikit-learn only: never hpsearch, storage, ray, typer."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import trainables.checks, trainables.mlp, trainables.softmax, trainables.svm
import trainables.synthetic
list(trainables.mlp.train({}, epochs=1, seed=0))
trainables.checks.run_checks("svm", {})
bad = sorted(m for m in sys.modules
             if m.split(".")[0] in {"hpsearch", "storage", "ray", "typer", "sqlalchemy"})
print(",".join(bad))
"""


def test_trainables_import_nothing_from_the_service() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""
