"""Ray Jobs: run the stage driver on a cluster's head as a job, and look after such jobs.

An HTTP client of the cluster's dashboard (`ray.job_submission`); like the executor it may
import Ray (the lint exception is for these two modules only).

The job's entrypoint runs in an unpacked copy of the working directory, so the spec path is
given relative to it and the database as an absolute path or a server URL: a relative path
would land in the job's temporary copy and vanish with it.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsearch.errors import ClusterError
from hpsearch.run_options import RunOptions
from hpsearch.runtime.cluster import (
    UPLOAD_EXCLUDES,
    check_listening,
    first_line,
    use_token_auth_if_available,
)
from storage import StageKind, masked

FINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class JobRequest:
    """What `hpsearch submit` sends: one `hpsearch coarse|fine` command and its files."""

    command: str  # coarse | fine
    spec: Path  # relative to working_dir
    working_dir: Path
    db: str  # absolute path or URL
    options: tuple[str, ...]  # further CLI options, already as strings

    @property
    def has_secret(self) -> bool:
        """The database URL holds a password: it travels in the job's environment instead."""
        return masked(self.db) != self.db

    @property
    def entrypoint(self) -> str:
        """The job's command; shown by `hpsearch jobs list` and the dashboard to anyone."""
        args = ["python", "-m", "hpsearch", self.command, self.spec.as_posix()]
        db = [] if self.has_secret else ["--db", self.db]
        return shlex.join([*args, *db, *self.options])

    @property
    def env_vars(self) -> dict[str, str]:
        secret = {"HPSEARCH_DB": self.db} if self.has_secret else {}
        return {"RAY_USAGE_STATS_ENABLED": "0", **secret}


@dataclass(frozen=True)
class JobRow:
    job_id: str
    status: str
    entrypoint: str
    message: str
    start_time: float | None  # seconds since the epoch
    end_time: float | None


def plan_job(
    kind: StageKind, spec: Path, db: str, working_dir: Path | None, options: RunOptions
) -> JobRequest:
    """The job running `hpsearch KIND`: run options checked and written as its options, paths
    checked and rewritten for the job's copy of the working dir."""
    argv = options.to_argv(kind)
    spec = spec.expanduser().resolve()
    root = (working_dir or spec.parent).expanduser().resolve()
    if not root.is_dir():
        raise ClusterError(f"--working-dir {root}: not a directory")
    try:
        relative = spec.relative_to(root)
    except ValueError:
        raise ClusterError(
            f"{spec}: the spec must lie inside the uploaded working dir {root}: "
            "move it there or pick --working-dir"
        ) from None
    check_upload_size(root)
    return JobRequest(kind.value, relative, root, _job_db(db), tuple(argv))


MIB = 1024 * 1024


def check_upload_size(root: Path) -> None:
    """Refuse, before zipping, a working dir larger than the dashboard accepts.

    Ray zips the dir and PUTs it to the dashboard, whose HTTP server takes at most
    DASHBOARD_CLIENT_MAX_SIZE (100 MiB in Ray 2.60; the GCS's own 512 MiB cap comes after):
    a larger zip fails with HTTP 413 after the whole upload. The files are counted
    uncompressed, exactly those Ray would zip (our excludes, .gitignore, .rayignore).
    """
    from ray._private.ray_constants import DASHBOARD_CLIENT_MAX_SIZE as limit

    files = upload_files(root)
    total = sum(size for size, _ in files)
    if total <= limit:
        return
    largest = ", ".join(
        f"{path.relative_to(root)} ({size / MIB:.1f} MiB)"
        for size, path in sorted(files, key=lambda f: f[0], reverse=True)[:3]
    )
    raise ClusterError(
        f"--working-dir {root}: {total / MIB:.1f} MiB of files to upload, over the "
        f"{limit / MIB:.0f} MiB a Ray cluster accepts for a job; largest: {largest}: move data "
        "out of it (read it from a path every node sees), list it in .rayignore, "
        "or pick a smaller --working-dir"
    )


def upload_files(root: Path) -> list[tuple[int, Path]]:
    """(size, path) of every file Ray would upload as the job's working dir."""
    from ray._private.ray_constants import RAY_RUNTIME_ENV_IGNORE_GITIGNORE
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    found: list[tuple[int, Path]] = []

    def add(path: Path) -> None:
        if path.is_file():
            found.append((path.stat().st_size, path))

    with_gitignore = os.environ.get(RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"
    excludes = [_get_excludes(root, list(UPLOAD_EXCLUDES))]
    quiet = logging.getLogger("hpsearch.upload")  # not Ray's INFO line about .rayignore
    quiet.setLevel(logging.WARNING)
    _dir_travel(root, excludes, add, include_gitignore=with_gitignore, logger=quiet)
    return found


def _job_db(db: str) -> str:
    return absolute_location(db)


def absolute_location(where: str) -> str:
    """A URL as it is; a relative path made absolute, as the job's driver must see it (it
    runs in its copy of the working dir)."""
    if "://" in where:
        return where
    path = Path(where).expanduser()
    return str(path if path.is_absolute() else path.absolute())


def connect(address: str | None) -> Any:
    """A JobSubmissionClient for the dashboard at `address`, or a clear error in seconds."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS")
    if not address:
        raise ClusterError(
            "--address: give the Ray dashboard address, e.g. http://HEAD:8265 "
            "(or set RAY_API_SERVER_ADDRESS)"
        )
    if "://" not in address:
        address = f"http://{address}"
    _check_http_reachable(address)
    use_token_auth_if_available()
    from ray.job_submission import JobSubmissionClient

    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no INFO lines about uploads

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - the SDK raises bare Exception/ConnectionError
        if _not_ray(exc):
            raise ClusterError(
                f"--address {address}: a web server answers there, but not Ray's dashboard "
                "(no Ray Jobs API at /api/version): give the head's dashboard address, "
                "http://HEAD:8265 by default"
            ) from None
        text = str(exc).strip().splitlines()
        reason = text[0] if text else type(exc).__name__
        raise ClusterError(f"--address {address}: cannot reach Ray Jobs: {reason}") from None


def _not_ray(exc: Exception) -> bool:
    """The SDK's version check found no Ray there: a 404, or an answer that is not Ray's JSON.

    (Its message would blame the cluster's Ray version, "Ray 1.9 or higher", for any of them.)
    """
    return "Version check returned 404" in str(exc) or isinstance(exc, ValueError | KeyError)


def _check_http_reachable(address: str) -> None:
    check_listening(
        address,
        address.split("://", 1)[1].split("/", 1)[0],
        expected="http://HOST:PORT of a Ray dashboard (default port 8265)",
        service="Ray dashboard",
        hint="that the head runs with its dashboard",
    )


def submit(client: Any, request: JobRequest) -> str:
    runtime_env = {
        "working_dir": str(request.working_dir),
        "excludes": list(UPLOAD_EXCLUDES),
        "env_vars": request.env_vars,
    }
    try:
        return str(client.submit_job(entrypoint=request.entrypoint, runtime_env=runtime_env))
    except Exception as exc:  # noqa: BLE001 - upload or HTTP errors, e.g. too large a dir
        raise ClusterError(f"submitting the job failed: {masked(first_line(exc))}") from None


def follow(client: Any, job_id: str, write: Callable[[str], None], poll: float = 1.0) -> str:
    """Print the job's log as it grows until the job ends; return its final status."""
    shown = 0
    while True:
        status = _status(client, job_id)
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            write(logs[shown:])
            shown = len(logs)
        if status in FINAL:
            return status
        time.sleep(poll)


def rows(client: Any) -> list[JobRow]:
    return sorted(
        (_row(job) for job in client.list_jobs() if job.submission_id),  # not plain drivers
        key=lambda r: r.start_time or 0.0,
    )


def info(client: Any, job_id: str) -> JobRow:
    try:
        return _row(client.get_job_info(job_id))
    except RuntimeError as exc:
        raise ClusterError(f"job {job_id}: {first_line(exc)}") from None


def logs(client: Any, job_id: str) -> str:
    info(client, job_id)  # a clear error for an unknown id
    return str(client.get_job_logs(job_id))


def stop(client: Any, job_id: str) -> bool:
    info(client, job_id)
    return bool(client.stop_job(job_id))


def _status(client: Any, job_id: str) -> str:
    status = client.get_job_status(job_id)
    return str(getattr(status, "value", status))


def _row(job: Any) -> JobRow:
    status = getattr(job.status, "value", str(job.status))
    return JobRow(
        job_id=job.submission_id or job.job_id or "",
        status=status,
        entrypoint=masked(job.entrypoint or ""),
        message=masked((job.message or "").strip()),
        start_time=job.start_time / 1000 if job.start_time else None,
        end_time=job.end_time / 1000 if job.end_time else None,
    )
