"""Find a study from what a user typed: a spec path or a study name (for show/trials/export)."""

from __future__ import annotations

from pathlib import Path

from hpsearch.errors import HpsearchError
from hpsearch.spec import load_spec
from storage import Store, StudyRecord, parse_url


class NotFoundError(HpsearchError):
    """The database or the study named on the command line does not exist."""


def open_existing(db: str) -> Store:
    """A Store on a database that must already exist (reading commands never create one)."""
    url = parse_url(db)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).is_file():
            raise NotFoundError(
                f"--db {db}: no database at {url.database}: run `hpsearch coarse SPEC --db {db}` "
                "first or point --db at an existing one"
            )
    return Store(db)


def study_name_from_arg(arg: str) -> str:
    """The study name: read from the spec when `arg` is a spec file, else `arg` itself."""
    path = Path(arg)
    if path.suffix == ".toml" or path.is_file():
        return load_spec(path).name
    return arg


def study_from_arg(store_or_db: Store | str, arg: str) -> StudyRecord:
    """The study named by `arg` (a spec path or a study name) in the database.

    Accepts an open Store or a --db value (which must exist: it is never created here).
    """
    store = store_or_db if isinstance(store_or_db, Store) else open_existing(store_or_db)
    name = study_name_from_arg(arg)
    study = store.study(name)
    if study is None:
        known = ", ".join(s.name for s in store.studies()) or "none"
        raise NotFoundError(f"{store.db}: no study named {name!r} (studies here: {known})")
    return study


__all__ = ["NotFoundError", "open_existing", "study_from_arg", "study_name_from_arg"]
