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


# Top-level hpsearch modules that do I/O; every other one is the pure domain.
IO_MODULES = {
    "__init__": "the package's public names",
    "__main__": "the console entry point",
    "api": "the Python API: opens the Store, starts executors",
    "checkpoints": "a stage's checkpoint files: the artifact store and their Store rows",
    "best": "copies the best trial's checkpoint out of the artifact store",
    "driver": "runs a stage: the Store and an executor",
    "lookup": "finds a study through the read-only path",
    "plots": "loads results and draws them",
}
# Libraries that talk to a database, a cluster or a terminal.
IO_LIBRARIES = {"ray", "typer", "rich", "sqlalchemy", "matplotlib"}
# hpsearch modules the pure domain never imports (the layers above it).
UPPER = ("hpsearch.cli", "hpsearch.runtime", "hpsearch.driver", "hpsearch.api", "hpsearch.ui")
# What the Ray package never imports: it runs the trials it is given.
DECIDERS = ("hpsearch.cli", "hpsearch.driver", "hpsearch.api", "hpsearch.ui", "hpsearch.planner")


def imports_from(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every absolute import in the file; names empty for `import x`."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


TEXT_HELPERS = {"masked"}  # hides passwords in messages: touches no database


def is_record_or_term(name: str) -> bool:
    """A frozen record, an enum, a constant or a text helper of storage: no database access."""
    import dataclasses
    from enum import Enum

    import storage

    if name in TEXT_HELPERS:
        return True
    value = getattr(storage, name)
    if isinstance(value, type):
        return dataclasses.is_dataclass(value) or issubclass(value, Enum)
    return not callable(value)


def test_the_pure_domain_touches_no_database_cluster_or_terminal() -> None:
    """spec, space, narrowing, planner, registry, run_options...: records in, decisions out."""
    pure = [p for p in (ROOT / "hpsearch").glob("*.py") if p.stem not in IO_MODULES]
    assert {p.stem for p in pure} >= {"errors", "narrowing", "space", "spec", "run_options"}
    for path in pure:
        assert not imported_roots(path) & IO_LIBRARIES, path.name
        for module, names in imports_from(path):
            assert not module.startswith(UPPER), f"{path.name} imports {module}"
            if module == "storage":
                assert all(map(is_record_or_term, names)), f"{path.name}: {names}"
            else:
                assert not module.startswith("storage."), f"{path.name} imports {module}"


def test_only_the_command_line_imports_the_command_line() -> None:
    for path in python_files("hpsearch"):
        if path.parent.name == "cli" or path.name == "__main__.py":
            continue
        for module, _ in imports_from(path):
            assert not module.startswith("hpsearch.cli"), f"{path.name} imports {module}"


def test_the_runtime_runs_trials_and_decides_nothing() -> None:
    """Ray code knows tasks and events; what to run and what to record is decided above it."""
    for path in python_files(RAY_PACKAGE):
        for module, names in imports_from(path):
            assert not module.startswith(DECIDERS), f"{path.name} imports {module}"
            if module == "storage":
                assert all(map(is_record_or_term, names)), f"{path.name}: {names}"


@pytest.mark.parametrize("package", ["hpsearch", "storage"])
def test_lazy_exports_name_each_module_the_type_checkers_see(package: str) -> None:
    """`__init__` lists its names twice (for type checkers, and for loading on first use)."""
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    checked = {
        alias.name: node.module.split(".", 1)[1]
        for block in tree.body
        if isinstance(block, ast.If)
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    assert checked == importlib.import_module(package)._MODULE_OF


def test_importing_the_packages_loads_no_heavy_library() -> None:
    """`import hpsearch, storage` (and the names a CLI module needs first) stays cheap."""
    code = "import sys, hpsearch, storage; storage.Status; storage.DEFAULT_DB; print(*sys.modules)"
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.split())  # fmt: skip
    assert not loaded & {"sqlalchemy", "numpy", "pandas", "ray", "aiohttp", "typer"}
