"""Errors hpsearch raises for the user to act on.

    HpsearchError           bad input or an unusable setup: one line, exit code 2
     ├── SpecError          the study spec breaks a rule (names file, key, rule, value)
     ├── TrainableError     the trainable cannot be found or is not a generator function
     ├── ClusterError       Ray cannot be started or reached
     └── DatabaseError      the database refused (the API's form of `storage.StorageError`)

Storage problems arrive as `storage.StorageError` and are reported the same way. Outside the
tree, `Terminated` (a KeyboardInterrupt) is SIGTERM during a stage: handled like Ctrl-C, and
`ClusterLost` is Ray failing under a running stage: one line, exit 1, resumable.
"""

from __future__ import annotations


class HpsearchError(Exception):
    """A problem the user must fix; the CLI prints it as one line and exits with code 2."""


class SpecError(HpsearchError):
    pass


class TrainableError(HpsearchError):
    pass


class ClusterError(HpsearchError):
    pass


class DatabaseError(HpsearchError):
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, systemd, Kubernetes) arrived while a stage ran: handled like Ctrl-C."""


class ClusterLost(Exception):
    """Ray itself failed mid-stage (a raylet, the GCS, every node): not the trials' fault.

    Results received so far are committed; the unfinished trials run on the next resume.
    """
