"""Ray's own messages go to a file, never to the user's terminal; a private Ray's session
directory goes with the command.

Ray's driver prints what its raylets publish (a worker died, a raylet died, with the last 20
lines of its log) as coloured `(raylet)` text on stdout, even with `log_to_driver=False`:
about 1 KB per dead worker in the middle of output that scripts parse. That text comes from one
driver thread (`listen_error_messages`) through `ray._private.worker.print_to_stdstream`, which
`divert()` replaces by a writer to `$HPSEARCH_HOME/logs/ray-<time>-<pid>.log`, created with the
first message; `written()` names it, for the stage summary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from hpsearch.runtime import local_ray

_lock = threading.Lock()
_path: Path | None = None
_messages = 0
_kept: Path | None = None


def divert() -> None:
    """Send Ray's driver-side messages to the log file from now on (before `ray.init`)."""
    import ray._private.worker as ray_worker

    ray_worker.print_to_stdstream = _write


def _write(data: dict[str, Any], ignore_prefix: bool = False) -> None:
    global _path, _messages
    source = data.get("pid") or "ray"
    with _lock:
        if _path is None:
            directory = local_ray.home() / "logs"
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            _path = directory / f"ray-{stamp}-{os.getpid()}.log"
        with _path.open("a", encoding="utf-8", errors="replace") as log:
            for line in data.get("lines", []):
                log.write(f"({source}) {line}\n")
        _messages += 1


def written() -> tuple[Path, int] | None:
    """The file Ray's messages went to and how many arrived; None when Ray said nothing."""
    with _lock:
        return None if _path is None else (_path, _messages)


def session_dir() -> Path | None:
    """The session directory of the Ray this process started itself (None if it joined one)."""
    import ray

    node: Any = ray._private.worker._global_node
    if node is None or not node.head:
        return None
    return Path(node.get_session_dir_path())


def ray_pids() -> list[int]:
    """The processes of the Ray this process started itself, its raylet first."""
    import ray
    from ray._private import ray_constants

    node: Any = ray._private.worker._global_node
    processes = node.all_processes
    raylet = [info.process.pid for info in processes.get(ray_constants.PROCESS_TYPE_RAYLET, [])]
    others = [info.process.pid for infos in processes.values() for info in infos]
    return list(dict.fromkeys(raylet + others))


def remove_session(session: Path) -> None:
    """Remove a stopped Ray's session directory, its `session_latest` link if that points to
    it, and Ray's temp directory if nothing else is left in it."""
    shutil.rmtree(session, ignore_errors=True)
    root = session.parent
    latest = root / "session_latest"
    with contextlib.suppress(OSError):
        if latest.is_symlink() and Path(os.readlink(latest)).name == session.name:
            latest.unlink()
    with contextlib.suppress(OSError):
        root.rmdir()  # only when empty: other Rays' sessions stay


def end_session(session: Path | None, keep: bool) -> None:
    """After `ray.shutdown()` of a Ray this process started: remove its session directory,
    or remember it as kept (`kept_session`)."""
    global _kept
    if session is None:
        return
    if keep:
        _kept = session
    else:
        remove_session(session)


def kept_session() -> Path | None:
    return _kept
