"""Every command pays only for what it uses: `--help` loads no database, numeric or Ray library,
`sql` on an SQLite file no SQLAlchemy, pandas, numpy or Ray (counted from Python's own import
log, not timed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

HEAVY = {"sqlalchemy", "numpy", "pandas", "ray", "aiohttp", "alembic", "matplotlib"}


def imported(*args: str, cwd: Path = ROOT) -> set[str]:
    """Top-level packages the real CLI imports for `hpsearch ARGS` (python -X importtime)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "hpsearch", *args],
                          cwd=cwd, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split("|")[-1] for line in done.stderr.splitlines() if "import time:" in line]
    return {line.strip().split(".")[0] for line in lines[1:]}


def test_help_loads_no_heavy_library() -> None:
    assert imported("--help").isdisjoint(HEAVY)
    assert imported("coarse", "--help").isdisjoint(HEAVY)


def test_sql_loads_only_the_database_library(tmp_path: Path) -> None:
    import storage

    storage.Store(str(tmp_path / "h.db")).close()
    loaded = imported("sql", "SELECT count(*) FROM trials", "--db", str(tmp_path / "h.db"))
    assert loaded.isdisjoint(HEAVY)  # an SQLite file is read through sqlite3 alone
