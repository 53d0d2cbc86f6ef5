"""Find a study from what a user typed: a spec path or a study name (for the reading commands).

The look-up itself is `storage.find_study`, through the read-only path: a reading command
never creates or changes a database.
"""

from __future__ import annotations

from pathlib import Path

from hpsearch.spec import load_spec
from storage import NotFoundError, Store, StudyRecord, find_study


def study_name_from_arg(arg: str) -> str:
    """The study name: read from the spec when `arg` is a spec file, else `arg` itself."""
    path = Path(arg)
    if path.suffix == ".toml" or path.is_file():
        return load_spec(path).name
    return arg


def study_from_arg(db: Store | str, arg: str) -> StudyRecord:
    """The study named by `arg` (a spec path or a study name) in an existing database.

    `db` is a --db value or an open Store (read through its URL, read-only).
    """
    if isinstance(db, Store):
        db = db.engine.url.render_as_string(hide_password=False)
    return find_study(db, study_name_from_arg(arg))


__all__ = ["NotFoundError", "study_from_arg", "study_name_from_arg"]
