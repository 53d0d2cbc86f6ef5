"""The artifact store: files land whole under their names, with a sha256 that reads check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from storage import ArtifactError, ArtifactStore, default_location

FILES = {"model.npz": b"\x93NUMPY weights", "state.json": b'{"epoch": 3}'}


def test_files_are_stored_whole_with_their_sha256(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "run.artifacts"))
    stored = store.put("trial-7/attempt-1/epoch-3", FILES)
    assert [s.name for s in stored] == list(FILES)
    for s in stored:
        path = Path(s.uri)
        assert path.is_absolute() and path.read_bytes() == FILES[s.name]
        assert s.bytes == len(FILES[s.name])
        assert s.sha256 == hashlib.sha256(FILES[s.name]).hexdigest()
        assert store.read(s.uri, s.sha256) == FILES[s.name]
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers  # temporary names were renamed


def test_a_changed_or_missing_file_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    model, state = store.put("t/1", FILES)
    Path(model.uri).write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="changed on disk"):
        store.read(model.uri, model.sha256)
    store.delete([state.uri, state.uri])  # deleting twice is fine
    with pytest.raises(ArtifactError, match="checkpoint file is missing"):
        store.read(state.uri, state.sha256)


def test_materialize_copies_a_checkpoint_into_a_local_directory(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    stored = store.put("t/1", FILES)
    into = store.materialize(stored, tmp_path / "restore")
    assert {p.name: p.read_bytes() for p in into.iterdir()} == FILES


def test_urls_go_through_fsspec(tmp_path: Path) -> None:
    store = ArtifactStore("memory://hpsearch-test/run")
    (model, _) = store.put("t/1", FILES)
    assert model.uri.startswith("memory://") and store.read(model.uri, model.sha256)
    file_store = ArtifactStore(f"file://{tmp_path}/shared")
    (model, _) = file_store.put("t/1", FILES)
    assert file_store.read(model.uri, model.sha256) == FILES["model.npz"]


def test_default_location_is_next_to_the_sqlite_file(tmp_path: Path) -> None:
    assert default_location(str(tmp_path / "results.db")) == str(tmp_path / "results.artifacts")
    with pytest.raises(ArtifactError, match="give --artifacts") as info:
        default_location("postgresql://u:secret@db.example/hp")
    assert "secret" not in str(info.value)
