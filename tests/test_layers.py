"""The one-way dependency rule of docs/ARCHITECTURE.md, and the public names of each package."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RAY_PACKAGE = "hpsearch/runtime"  # Ray core, the worker loop, cluster checks, Ray Jobs client


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_names(package: str) -> list[str]:
    names = []
    for path in python_files(package):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_storage_knows_nothing_of_hpsearch_ray_or_the_cli() -> None:
    for path in python_files("storage"):
        assert not imported_roots(path) & {"hpsearch", "ray", "typer", "rich"}, path.name


def test_only_the_runtime_package_talks_to_ray() -> None:
    """Imports of ray, and Ray code run in a child process (the GCS probe), stay in runtime/."""
    importers = {
        str(path.relative_to(ROOT))
        for path in python_files("hpsearch")
        if "ray" in imported_roots(path)
        or re.search(r"^\s*(import|from) ray\b", path.read_text(), re.M)
    }
    assert importers and all(p.startswith(RAY_PACKAGE + "/") for p in importers), importers


@pytest.mark.parametrize("package", ["hpsearch", "storage", "trainables"])
def test_every_module_imports_alone_in_a_fresh_interpreter(package: str) -> None:
    """No import cycles: each module can be the first one a tool or a user imports."""
    failed = {}
    for name in module_names(package):
        done = subprocess.run(
            [sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True
        )
        if done.returncode:
            failed[name] = done.stderr.strip().splitlines()[-1]
    assert not failed, failed


def test_trainables_import_no_hpsearch_code() -> None:
    for path in python_files("trainables"):
        assert not imported_roots(path) & {"hpsearch", "storage", "ray", "typer"}, path.name


@pytest.mark.parametrize("package", ["hpsearch", "storage"])
def test_public_names_exist(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name} is in __all__ but missing"
