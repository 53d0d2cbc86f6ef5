from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.lookup import NotFoundError, study_from_arg
from storage import Store

SPEC = """
name = "look"
trainable = "synthetic"
metric = "val_acc"
[space]
lr = { type = "loguniform", low = 1e-4, high = 1 }
"""


def test_study_from_spec_path_or_name(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    Store(db).ensure_study("look", "trainables.synthetic:train", "val_acc", "max")
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    assert study_from_arg(db, str(spec)).name == "look"
    assert study_from_arg(Store(db), "look").name == "look"


def test_unknown_study_lists_known_ones(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    Store(db).ensure_study("look", "trainables.synthetic:train", "val_acc", "max")
    with pytest.raises(NotFoundError, match="no study named 'nope' .studies here: look"):
        study_from_arg(db, "nope")


def test_missing_database_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    with pytest.raises(NotFoundError, match="no database at"):
        study_from_arg(str(db), "look")
    assert not db.exists()
