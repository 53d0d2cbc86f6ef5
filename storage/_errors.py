"""Storage errors: every one carries a sentence a user can act on."""

from __future__ import annotations

import re


class StorageError(Exception):
    """The database cannot be opened, read or written as asked."""


class SchemaVersionError(StorageError):
    """The database was written by an hpsearch with another schema version."""


class NotFoundError(StorageError):
    """The database or the study named on the command line does not exist."""


class RowError(StorageError):
    """The database refused a row of a batch (its encoding, length or a constraint), not the
    batch as a whole: the other rows may still go in without it."""

    def __init__(self, db: str, reason: str) -> None:
        super().__init__(f"{db}: {reason}")
        self.reason = reason  # the database's (or its driver's) words, on one line


class QueryTimeout(StorageError):
    """A read-only query ran past its time limit and was stopped."""


class ArtifactError(StorageError):
    """A checkpoint file is missing, changed on disk, or cannot be written."""


# `scheme://user:password@`, the password as SQLAlchemy's URL parser delimits it.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")


def masked(text: str) -> str:
    """`text` with the password of every database URL in it replaced by `***`."""
    return _URL_PASSWORD.sub(r"\1***@", text)
