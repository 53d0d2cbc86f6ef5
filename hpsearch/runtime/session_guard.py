"""A guard for the private local Ray of one command: whatever ends the command (`kill -9` too),
the Ray processes it leaves are ended and its session directory removed (unless kept).

Without it, Ray's agents outlive a killed driver by up to a minute (they retry the dead GCS
before giving up) and the session directory stays for good. The command starts
`python -m hpsearch.runtime.session_guard SESSION KEEP PID...` (Ray's own processes, the
raylet first) with a pipe as its stdin and holds the pipe's other end: end of file means the
command is gone. Until then the guard notes, twice a second, the processes below the raylet
(agents, workers), which the raylet's death would orphan. Each process is remembered with its
start time, so a pid the system has given to another process since is never touched.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

MODULE = "hpsearch.runtime.session_guard"


def start(session: Path, keep: bool, pids: list[int]) -> subprocess.Popen[bytes]:
    """The guard of this command's Ray (the raylet's pid first in `pids`); it ends when the
    returned process's stdin is closed, by `stop` or by this process's death."""
    from hpsearch.runtime.local_ray import source_root

    paths = [source_root(), os.environ.get("PYTHONPATH")]
    return subprocess.Popen(
        [sys.executable, "-m", MODULE, str(session), "1" if keep else "0", *map(str, pids)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal is the command's, not the guard's
    )


def stop(guard: subprocess.Popen[bytes]) -> None:
    """After `ray.shutdown()`: let the guard finish what is left, then reap it."""
    if guard.stdin is not None:
        guard.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        guard.wait(timeout=10)


def _started(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _below(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found += children
                todo += children
    return found


def _watch(raylet: int, known: dict[int, str]) -> None:
    """Until stdin ends: remember the processes below the raylet."""
    while True:
        readable, _, _ = select.select([sys.stdin.buffer], [], [], 0.5)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            return
        for pid in _below(raylet):
            started = _started(pid)
            if started is not None:
                known.setdefault(pid, started)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    session, keep, pids = Path(argv[0]), argv[1] == "1", [int(p) for p in argv[2:]]
    known = {pid: started for pid in pids if (started := _started(pid)) is not None}
    _watch(pids[0], known)
    time.sleep(1.0)  # a command that ended normally has stopped its Ray by now
    for pid, started in known.items():
        if _started(pid) == started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    if not keep:
        from hpsearch.runtime.ray_log import remove_session

        time.sleep(0.2)  # the killed processes' last writes
        remove_session(session)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
