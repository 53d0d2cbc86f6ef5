"""A warm local Ray: the first local command leaves one running, the next ones join it in a second.

Starting a local Ray costs seconds (its processes, then the workers' Python start-up); joining a
running one costs ~0.2 s, and a prestarted idle worker takes the first trial at once. So a
command without `--address` joins the warm Ray of this user, starting it when none runs.

The warm Ray is one detached *owner* process (`python -m hpsearch.runtime.local_ray serve`)
that starts Ray with `ray.init` on 127.0.0.1 (no dashboard, token auth with its own token) and
stays as its guard: Ray's processes share its fate (the kernel kills them when it dies), it
stops after `HPSEARCH_RAY_IDLE_SECONDS` (default 900) without a command, and it exits when a
Ray process of its own has died. Between commands it keeps one idle, prestarted worker per CPU
(Ray gives every command its own workers; a worker never serves two commands).

Files, in `$HPSEARCH_HOME/ray` (default `~/.hpsearch/ray`, mode 0700):
    state.json   address, owner pid, CPUs: written by the owner once Ray is up, removed at its end
    auth_token   the token of the warm Ray (0600)
    lease        every command holds a shared lock on it while it uses the warm Ray; the owner
                 stops only with the exclusive lock; its mtime is the last use
    start.lock   one command at a time checks the state and starts an owner
    owner.log    the owner's messages
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hpsearch.errors import ClusterError

HOME_ENV = "HPSEARCH_HOME"
REUSE_ENV = "HPSEARCH_REUSE_RAY"
IDLE_ENV = "HPSEARCH_RAY_IDLE_SECONDS"
DEFAULT_IDLE_SECONDS = 900.0
START_SECONDS = 300.0  # Ray can take a minute to start on a loaded machine
OWNER_MODULE = "hpsearch.runtime.local_ray"
REFILL_DELAY = 2.0  # after a command ends, before counting idle workers (its own are exiting)


def home() -> Path:
    given = os.environ.get(HOME_ENV)
    return Path(given).expanduser().resolve() if given else Path.home() / ".hpsearch"


def ray_dir() -> Path:
    directory = home() / "ray"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def reuse_enabled() -> bool:
    return os.environ.get(REUSE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def idle_seconds() -> float:
    raw = os.environ.get(IDLE_ENV)
    try:
        return float(raw) if raw else DEFAULT_IDLE_SECONDS
    except ValueError:
        raise ClusterError(f"{IDLE_ENV}={raw!r}: expected a number of seconds") from None


@dataclass(frozen=True)
class WarmRay:
    address: str  # GCS HOST:PORT, always 127.0.0.1
    pid: int  # the owner process
    cpus: int
    started: float
    idle_seconds: float
    node_manager_port: int
    python: str = ""  # the interpreter of the owner and of every worker
    ray_version: str = ""

    def serves(self, cpus: int) -> bool:
        """Whether a command of this interpreter asking for `cpus` CPUs can join it."""
        return (self.cpus, self.python, self.ray_version) == (cpus, sys.executable, _ray_version())


def _ray_version() -> str:
    from importlib.metadata import version

    return version("ray")


def _state_path() -> Path:
    return ray_dir() / "state.json"


def token_path() -> Path:
    return ray_dir() / "auth_token"


def read_state() -> WarmRay | None:
    try:
        return WarmRay(**json.loads(_state_path().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(state: WarmRay) -> None:
    path = _state_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(path)


def _is_owner(pid: int) -> bool:
    try:
        return OWNER_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def answers(address: str) -> bool:
    """Whether something accepts TCP connections at HOST:PORT (within 2 s)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2.0).close()
    except (OSError, ValueError):
        return False
    return True


def alive(state: WarmRay) -> bool:
    """The owner runs and its Ray answers (a crashed Ray takes its owner down within a second)."""
    return _is_owner(state.pid) and answers(state.address)


def last_used() -> float:
    try:
        return (ray_dir() / "lease").stat().st_mtime
    except OSError:
        return 0.0


def current() -> WarmRay | None:
    """The running warm Ray, after removing what a crashed one left behind."""
    state = read_state()
    if state is None or alive(state):
        return state
    _end_owner(state.pid, grace=5.0)
    _remove_state(state.pid)
    return None


def _remove_state(pid: int) -> None:
    state = read_state()
    if state is not None and state.pid == pid:
        _state_path().unlink(missing_ok=True)


def _end_owner(pid: int, grace: float) -> bool:
    """SIGTERM the owner (Ray stops with it), SIGKILL after `grace` seconds; False if not ours."""
    if not _is_owner(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _is_owner(pid):
            time.sleep(0.1)
        if _is_owner(pid):
            os.kill(pid, signal.SIGKILL)
            while _is_owner(pid):
                time.sleep(0.05)
    return True


def stop() -> WarmRay | None:
    """End the warm Ray now (a stage running on it loses its workers); the one that ran."""
    with _start_lock():
        state = read_state()
        if state is None:
            return None
        _end_owner(state.pid, grace=30.0)
        _remove_state(state.pid)
        return state


def in_use() -> bool:
    """Whether a command holds a lease on the warm Ray now."""
    fd = os.open(ray_dir() / "lease", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def _start_lock() -> Iterator[None]:
    fd = os.open(ray_dir() / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class Lease:
    """A command's use of the warm Ray: the owner does not stop while a lease is held."""

    def __init__(self, state: WarmRay, fd: int) -> None:
        self.state = state
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.utime(self._fd)  # the last use, for the idle timeout
        os.close(self._fd)
        self._fd = None


def acquire(cpus: int) -> Lease | None:
    """A lease on the warm Ray, started if none runs; None if it has other CPUs, another
    Python or another Ray version than this command (which then starts a private Ray)."""
    fd = os.open(ray_dir() / "lease", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits while an owner is stopping
        os.utime(fd)
        with _start_lock():
            state = current() or _start(cpus)
    except BaseException:
        os.close(fd)
        raise
    if not state.serves(cpus):
        os.close(fd)
        return None
    return Lease(state, fd)


def _ensure_token() -> Path:
    path = token_path()
    if not path.is_file() or not path.read_text().strip():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def use_warm_token() -> None:
    """Make this process's Ray client authenticate with the warm Ray's token."""
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path())
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the path
    if "ray._raylet" in sys.modules:  # refresh Ray's cached config for this process
        sys.modules["ray._raylet"].Config.initialize("")
        sys.modules["ray._raylet"].AuthenticationTokenLoader.instance().reset_cache()


def source_root() -> str | None:
    """The directory to put on sys.path for `import hpsearch` when it is not installed."""
    import sysconfig

    import hpsearch

    root = str(Path(hpsearch.__file__).resolve().parent.parent)
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    return None if root in installed else root


def _owner_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    paths = [source_root(), *env.get("PYTHONPATH", "").split(os.pathsep)]
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in paths if p),  # the owner's own; not for workers
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(_ensure_token()),
    )
    return env


def _start(cpus: int) -> WarmRay:
    directory = ray_dir()
    log = directory / "owner.log"
    command = [sys.executable, "-m", OWNER_MODULE, "serve", "--cpus", str(cpus)]
    command += ["--idle-seconds", str(idle_seconds())]
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            command,
            cwd=directory,
            env=_owner_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # outlives this command, and its Ctrl-C
        )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        state = read_state()
        if state is not None and state.pid == proc.pid:
            return state
        if proc.poll() is not None:
            raise ClusterError(f"cannot start the local Ray: {_last_line(log)} (see {log})")
        time.sleep(0.05)
    _end_owner(proc.pid, grace=5.0)
    raise ClusterError(f"the local Ray did not start within {START_SECONDS:g}s (see {log})")


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "the owner process exited"


def loopback_only() -> None:
    """Make Ray bind and advertise 127.0.0.1 only, not every interface.

    Ray reads this switch once, when it is imported (measured: setting only the environment
    variable after the import leaves gcs_server and raylet listening on all interfaces).
    """
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for Ray's child processes
    ray_constants.ENABLE_RAY_CLUSTER = False


def start_on_loopback(cpus: int | None) -> None:
    """Start a local Ray on 127.0.0.1 only, without a dashboard, its logs kept from the terminal:
    the one set of options behind both the warm Ray and a command's private one."""
    loopback_only()
    import ray

    ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )


# ---- the owner process -------------------------------------------------------------------


class _Owner:
    def __init__(self, cpus: int, idle: float) -> None:
        self.cpus = cpus
        self.idle = idle
        self.stopping = False
        self.refilled_after = last_used()

    def serve(self) -> None:
        import ray

        os.environ.pop("PYTHONPATH", None)  # workers get each command's sys.path, not ours
        start_on_loopback(self.cpus)
        node: Any = ray._private.worker._global_node
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._stop)
        with contextlib.suppress(OSError):
            os.utime(ray_dir() / "lease")
        self.refilled_after = last_used()  # Ray prestarted one worker per CPU itself
        state = WarmRay(
            address=node.gcs_address,
            pid=os.getpid(),
            cpus=self.cpus,
            started=time.time(),
            idle_seconds=self.idle,
            node_manager_port=node.node_manager_port,
            python=sys.executable,
            ray_version=ray.__version__,
        )
        _write_state(state)
        session = Path(node.get_session_dir_path())
        try:
            self._watch(node, state)
        finally:
            _remove_state(state.pid)
            ray.shutdown()
            from hpsearch.runtime.ray_log import remove_session

            remove_session(session)

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def _watch(self, node: Any, state: WarmRay) -> None:
        while not self.stopping:
            time.sleep(0.5)
            if node.dead_processes():
                names = ", ".join(sorted({name for name, _ in node.dead_processes()}))
                print(f"hpsearch: a Ray process died ({names}): stopping", file=sys.stderr)
                return
            fd = os.open(ray_dir() / "lease", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a command is using Ray
                os.close(fd)
                continue
            try:
                if time.time() - last_used() > self.idle:
                    _remove_state(state.pid)  # under the lock: the next command starts anew
                    print("hpsearch: idle timeout: stopping", file=sys.stderr)
                    return
                self._refill(node, state)
            finally:
                os.close(fd)

    def _refill(self, node: Any, state: WarmRay) -> None:
        """After a command ended, prestart idle workers for the next one (up to one per CPU)."""
        used = last_used()
        if used <= self.refilled_after or time.time() - used < REFILL_DELAY:
            return
        self.refilled_after = used
        try:
            missing = self.cpus - _idle_workers(node)
            if missing > 0:
                _prestart(state.node_manager_port, missing)
        except Exception as exc:  # only a speed-up: the next command starts its own workers
            print(f"hpsearch: prestarting workers failed: {exc}", file=sys.stderr)


def _idle_workers(node: Any) -> int:
    """Idle workers of the raylet (between commands, none belongs to a command)."""
    from ray._private import ray_constants

    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    count = 0
    for child in Path(f"/proc/{raylet}/task/{raylet}/children").read_text().split():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"ray::IDLE"):
                count += 1
    return count


def _prestart(port: int, count: int) -> None:
    """Ask the raylet for `count` workers not bound to any job yet (the next command's).

    No keep-alive: Ray's soft limit (one idle worker per CPU) still trims any surplus.
    """
    import grpc
    from ray.core.generated import common_pb2, node_manager_pb2, node_manager_pb2_grpc

    messages: Any = node_manager_pb2
    languages: Any = common_pb2

    token = token_path().read_text().strip()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = node_manager_pb2_grpc.NodeManagerServiceStub  # generated, untyped
        stub(channel).PrestartWorkers(
            messages.PrestartWorkersRequest(
                language=languages.PYTHON,
                num_workers=count,
            ),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=10,
        )


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {OWNER_MODULE}")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--cpus", type=int, required=True)
    parser.add_argument("--idle-seconds", type=float, default=DEFAULT_IDLE_SECONDS)
    args = parser.parse_args(argv)
    _Owner(args.cpus, args.idle_seconds).serve()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
