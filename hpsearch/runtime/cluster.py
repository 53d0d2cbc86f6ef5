"""Reaching a Ray cluster: address checks, token auth and a quick probe, before Ray starts.

Does not import Ray (the probe runs in a child process), so a bad `--address` fails in
seconds with one line, before the database changes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from hpsearch.errors import ClusterError


def cluster_address(given: str | None) -> str | None:
    """The cluster to join (`--address`, else RAY_ADDRESS); None (or "local"): start Ray here."""
    address = given or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


_checked: set[str] = set()


def check_cluster(given: str | None) -> None:
    """Fail in seconds with one clear line when `--address` (or RAY_ADDRESS) cannot be joined.

    Called before the stage touches the database, so a bad address leaves it unchanged.
    """
    address = cluster_address(given)
    if not address or address in _checked:
        return
    if address != "auto":
        _check_reachable(address)
    token = use_token_auth_if_available()
    if address != "auto" and not address.startswith("ray://"):
        _probe_gcs(address, token)
    _checked.add(address)


UPLOAD_EXCLUDES = ("*.db", "*.db-wal", "*.db-shm", "*.db-journal", ".git", "__pycache__", ".venv")
PROBE_SECONDS = 15.0
_PROBE = """
import sys
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1]).cluster_id
except Exception as exc:
    print(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    sys.exit(1)
"""


def token_source() -> str | None:
    """Where a Ray auth token is available to this process, if anywhere."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and Path(path).is_file():
        return path
    default = Path.home() / ".ray" / "auth_token"
    if default.is_file() and default.stat().st_size:
        return str(default)
    return None


def use_token_auth_if_available() -> str | None:
    """Turn on Ray token auth when a token exists and RAY_AUTH_MODE is unset.

    A client without RAY_AUTH_MODE=token does not get an auth error from a token cluster but
    minutes of retries; sending a token to a cluster without auth is harmless.
    """
    source = token_source()
    if source and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray._raylet" in sys.modules:  # refresh Ray's cached config for this process
            sys.modules["ray._raylet"].Config.initialize("")
    return source


def _probe_gcs(address: str, token: str | None) -> None:
    """Ask the cluster for its id once, in a child process: a clear error in seconds, no retries."""
    gcs = address.split("://", 1)[-1].rstrip("/")
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE, gcs],
            capture_output=True,
            text=True,
            timeout=PROBE_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(
            f"--address {address}: something listens there but no Ray cluster answered within "
            f"{PROBE_SECONDS:g}s: give the GCS port of `ray start --head` (default 6379)"
        ) from None
    if probe.returncode == 0:
        return
    reason = (probe.stdout.strip().splitlines() or ["no answer"])[-1]
    if reason.startswith("AuthenticationError"):
        raise ClusterError(f"--address {address}: {_auth_advice(token)}")
    raise ClusterError(f"--address {address}: cannot join the Ray cluster: {reason}")


def _auth_advice(token: str | None) -> str:
    mode = os.environ.get("RAY_AUTH_MODE", "")
    if mode.lower() == "disabled":
        return (
            "the cluster requires token authentication but RAY_AUTH_MODE=disabled here: "
            "unset it and provide the cluster's token"
        )
    if token is None:
        return (
            "the cluster requires token authentication and no token was found: copy the "
            "output of `ray get-auth-token` on the head to ~/.ray/auth_token or RAY_AUTH_TOKEN"
        )
    return (
        f"the cluster rejected the auth token from {token}: copy the output of "
        "`ray get-auth-token` on the head to ~/.ray/auth_token or RAY_AUTH_TOKEN"
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at the cluster address."""
    if address.startswith(("http://", "https://")):
        raise ClusterError(
            f"--address {address}: that is a dashboard (Ray Jobs) address, which only "
            "`hpsearch submit` and `hpsearch jobs` take: give the head's HOST:PORT "
            "(GCS port, default 6379)"
        )
    check_listening(
        address,
        address.split("://", 1)[-1].rstrip("/"),
        expected="HOST:PORT of a Ray head (e.g. 10.0.0.5:6379)",
        service="Ray cluster",
        hint="that `ray start --head` runs there",
    )


def check_listening(
    address: str, host_port: str, *, expected: str, service: str, hint: str
) -> None:
    """One clear line within seconds when `host_port` is malformed or nothing listens there."""
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address}: expected {expected}")
    try:
        socket.create_connection((host, int(port)), timeout=3.0).close()
    except OSError as exc:
        raise ClusterError(
            f"--address {address}: no {service} reachable ({exc.strerror or exc}): "
            f"check the address and {hint}"
        ) from None
