"""The one-way dependency rule of DESIGN.md, and the public names of each package."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RAY_MODULES = {"hpsearch/executor.py", "hpsearch/jobs.py"}  # Ray core; Ray Jobs client


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).glob("*.py"))


def test_storage_knows_nothing_of_hpsearch_ray_or_the_cli() -> None:
    for path in python_files("storage"):
        assert not imported_roots(path) & {"hpsearch", "ray", "typer", "rich"}, path.name


def test_only_the_executor_and_jobs_client_import_ray() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in python_files("hpsearch")
        if "ray" in imported_roots(path)
    }
    assert importers <= RAY_MODULES


def test_trainables_import_no_hpsearch_code() -> None:
    for path in python_files("trainables"):
        assert not imported_roots(path) & {"hpsearch", "storage", "ray", "typer"}, path.name


@pytest.mark.parametrize("package", ["hpsearch", "storage"])
def test_public_names_exist(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name} is in __all__ but missing"
