"""The artifact store: where checkpoint files live, next to the database or at any URL.

A local directory by default (`results.db` -> `results.artifacts/`), or any fsspec URL
(`s3://bucket/run`, `gs://...`, `file:///shared/nfs/run`) given with `--artifacts`. Every
file is written under a temporary name and renamed, so a crash never leaves a half file at a
recorded name, and its sha256 is returned to be recorded; reads check it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from storage._engine import to_url
from storage._errors import ArtifactError


@dataclass(frozen=True)
class StoredFile:
    """One file of a checkpoint as recorded: `uri` is absolute (a path or a URL)."""

    name: str
    uri: str
    bytes: int
    sha256: str


def default_location(db: str) -> str:
    """`results.db` -> `results.artifacts` beside it; a server database needs `--artifacts`."""
    url = make_url(to_url(db))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise ArtifactError(
            f"{url.render_as_string(hide_password=True)}: checkpoints need a place of their "
            "own next to a server database: give --artifacts DIR or URL"
        )
    path = Path(url.database)
    return str(path.with_name(path.stem + ".artifacts"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Files under one root, a local directory or an fsspec URL."""

    def __init__(self, location: str) -> None:
        import fsspec

        self.location = location
        try:
            self.fs, root = fsspec.core.url_to_fs(location)
        except (ImportError, ValueError) as exc:
            raise ArtifactError(f"--artifacts {location}: not a usable location ({exc})") from None
        self.root = root.rstrip("/")
        self._url_prefix = "" if "://" not in location else location.split("://", 1)[0] + "://"

    def uri(self, path: str) -> str:
        return f"{self._url_prefix}{path}" if self._url_prefix else str(Path(path).absolute())

    def _path(self, uri: str) -> str:
        return uri[len(self._url_prefix) :] if self._url_prefix else uri

    def put(self, key: str, files: Mapping[str, bytes]) -> list[StoredFile]:
        """Write `files` (name -> content) under `key`, each through a temporary name."""
        folder = f"{self.root}/{key}"
        stored = []
        try:
            self.fs.makedirs(folder, exist_ok=True)
            for name, data in files.items():
                final = f"{folder}/{name}"
                temporary = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
                with self.fs.open(temporary, "wb") as out:
                    out.write(data)
                self.fs.mv(temporary, final)
                stored.append(StoredFile(name, self.uri(final), len(data), sha256(data)))
        except OSError as exc:
            raise ArtifactError(f"{self.location}: cannot write {key}: {exc}") from None
        return stored

    def read(self, uri: str, expected_sha256: str) -> bytes:
        """A recorded file's content; refused when it is gone or its sha256 changed."""
        try:
            with self.fs.open(self._path(uri), "rb") as file:
                data: bytes = file.read()
        except FileNotFoundError:
            raise ArtifactError(f"{uri}: checkpoint file is missing") from None
        except OSError as exc:
            raise ArtifactError(f"{uri}: cannot read checkpoint file: {exc}") from None
        if sha256(data) != expected_sha256:
            raise ArtifactError(
                f"{uri}: checkpoint file changed on disk (sha256 {sha256(data)[:12]}..., "
                f"recorded {expected_sha256[:12]}...): it will not be used"
            )
        return data

    def materialize(self, files: Iterable[Any], into: Path) -> Path:
        """Copy recorded files (with `.name`, `.uri`, `.sha256`) into a local directory."""
        into.mkdir(parents=True, exist_ok=True)
        for file in files:
            (into / file.name).write_bytes(self.read(file.uri, file.sha256))
        return into

    def delete(self, uris: Iterable[str]) -> None:
        """Remove files; ones already gone are fine. Folders left empty go too (up to the
        root), so pruned trials leave no empty directories behind."""
        folders = set()
        for uri in uris:
            path = self._path(uri)
            folders.add(path.rsplit("/", 1)[0])
            try:
                self.fs.rm(path)
            except FileNotFoundError:
                pass
        for folder in sorted(folders, reverse=True):
            self._remove_empty(folder)

    def _remove_empty(self, folder: str) -> None:
        while folder.startswith(self.root + "/"):
            try:
                self.fs.rmdir(folder)
            except OSError:  # not empty (or gone, or no folders on this store): stop here
                return
            folder = folder.rsplit("/", 1)[0]


def read_files(files: Iterable[Any]) -> dict[str, bytes]:
    """Recorded files (with `.name`, `.uri`, `.sha256`) by name, each checked; wherever they
    live (each `uri` is absolute)."""
    content = {}
    for file in files:
        folder = file.uri.rsplit("/", 1)[0] if "://" in file.uri else str(Path(file.uri).parent)
        content[file.name] = ArtifactStore(folder).read(file.uri, file.sha256)
    return content
