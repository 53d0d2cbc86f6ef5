"""Shared fixtures: one local Ray for the whole suite, the CLI as a real subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def hpsearch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private HPSEARCH_HOME for the suite; local commands start a private Ray by default.

    tests/test_warm_ray.py turns the warm local Ray on where it tests it; whatever warm Ray a
    test leaves is stopped here, so none outlives the suite or lands in the user's home.
    """
    home = tmp_path_factory.mktemp("hpsearch-home")
    saved = {k: os.environ.get(k) for k in ("HPSEARCH_HOME", "HPSEARCH_REUSE_RAY")}
    os.environ["HPSEARCH_HOME"] = str(home)
    os.environ["HPSEARCH_REUSE_RAY"] = "0"
    try:
        yield home
    finally:
        run_cli("ray", "stop", cwd=home, env={"HPSEARCH_HOME": str(home)})
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """A local Ray on 127.0.0.1 that every end-to-end CLI run joins (one start for the suite)."""
    import ray

    context = ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run the real `hpsearch` console script in a subprocess."""
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    full_env.pop("RAY_ADDRESS", None) if env is None or "RAY_ADDRESS" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def query(db: Path, sql: str) -> list[tuple]:
    """Rows of one query on an SQLite results file, as a user's SQL client would see them."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()
