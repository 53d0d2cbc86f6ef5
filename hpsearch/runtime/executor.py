"""Executors run trials and stream their events back: on Ray, or in this process for tests.

With the Ray Jobs client (jobs.py), the only module that imports Ray. Trials travel in
bundles (one streaming Ray task runs several trials one after another) sized from the
measured trial time, so many short trials cost few tasks and few messages, while long trials
still get one task each.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, SupportsIndex

from hpsearch.asha import RungBoard
from hpsearch.errors import ClusterError, ClusterLost, Terminated
from hpsearch.registry import Trainable, resolve
from hpsearch.runtime import local_ray, ray_log, session_guard
from hpsearch.runtime.cluster import UPLOAD_EXCLUDES, check_cluster, cluster_address, first_line
from hpsearch.runtime.local_ray import loopback_only
from hpsearch.runtime.worker import (
    Checkpointed,
    Drawn,
    Ended,
    EpochDone,
    Event,
    Lost,
    Rungs,
    Started,
    TrialTask,
    run_bundle,
)
from storage import Status

FLUSH_SECONDS = 0.05  # a worker sends at most one message per trial bundle this often
BUNDLE_SECONDS = 1.0  # aim for bundles of about this much work
IN_FLIGHT_PER_SLOT = 2


class Executor(Protocol):
    slots: int

    def run(
        self, tasks: Iterable[Drawn], board: RungBoard | None = None
    ) -> Iterator[list[Event]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Workload:
    """What every trial of a stage shares."""

    trainable: str
    metric: str
    search_path: Path
    # a function object given instead of a name: it travels with the task (cloudpickle, by
    # value when defined in a notebook or `__main__`), never imported by name on a worker
    function: Trainable | None = None

    def resolve(self, search_path: Path | None) -> Trainable:
        if self.function is not None:
            return self.function
        return resolve(self.trainable, search_path)


class InProcessExecutor:
    """Runs trials one by one in this process: same events as Ray, for fast tests."""

    slots = 1

    def __init__(self, workload: Workload) -> None:
        self.workload = workload

    def run(self, tasks: Iterable[Drawn], board: RungBoard | None = None) -> Iterator[list[Event]]:
        fn = self.workload.resolve(self.workload.search_path)
        for task in tasks:
            if task is None:  # none running here when it asks: an epoch budget is spent
                return
            yield from run_bundle(fn, [task], self.workload.metric, "local", 0.0, board)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    cpus: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_retries: int = 2
    trial_timeout: float | None = None  # seconds from a trial's start; None: no limit
    keep_logs: bool = False  # keep the session directory of a private local Ray


_pinned_threads: int | None = None


def _pin_blas_threads(n: int) -> None:
    """Numpy in a worker uses only the task's CPUs (else 2 trials x N BLAS threads fight)."""
    global _pinned_threads
    if _pinned_threads != n:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
        _pinned_threads = n


@dataclass(frozen=True)
class DriverContext:
    """What a worker of the warm local Ray takes from the command it serves (once per worker).

    A private local Ray inherits the command's environment and directory; the warm one was
    started by an earlier command, so its workers adopt this command's before the first trial.
    """

    cwd: str
    env: tuple[tuple[str, str], ...]

    @classmethod
    def here(cls) -> DriverContext:
        env = tuple((k, v) for k, v in os.environ.items() if not _ray_managed(k))
        return cls(os.getcwd(), env)

    def enter(self) -> None:
        env = dict(self.env)
        for key in [k for k in os.environ if k not in env and not _ray_managed(k)]:
            del os.environ[key]
        os.environ.update(env)
        os.chdir(self.cwd)


def _ray_managed(key: str) -> bool:
    """Variables Ray sets for each worker (or this machine's Ray setup), kept as Ray set them."""
    return key.startswith("RAY_") or key in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "PWD")


_trainables: dict[tuple[str, Path | None], Trainable] = {}  # per worker process (one job)


def _trainable(workload: Workload, search_path: Path | None) -> Trainable:
    """The workload's trainable, imported once per worker process, not once per bundle (a
    function object travels with the workload: it is never cached under its name)."""
    if workload.function is not None:
        return workload.function
    key = (workload.trainable, search_path)
    if key not in _trainables:
        _trainables[key] = resolve(*key)
    return _trainables[key]


_entered: DriverContext | None = None


def _bundle_task(
    workload: Workload,
    tasks: list[TrialTask],
    threads: int,
    flush_seconds: float,
    driver: DriverContext | None = None,
    board: Rungs | None = None,
) -> Iterator[list[Event]]:
    import ray

    global _entered
    if driver is not None and _entered is None:
        driver.enter()
        _entered = driver
    context = ray.get_runtime_context()
    # on a cluster the spec's directory arrives as the working_dir (cwd, on sys.path): import
    # from that copy, not from a driver path that may not exist (or differ) on this node
    shipped = bool((context.runtime_env or {}).get("working_dir"))
    fn = _trainable(workload, None if shipped else workload.search_path)
    _pin_blas_threads(threads)
    node_id = context.get_node_id()
    yield from run_bundle(fn, tasks, workload.metric, node_id, flush_seconds, board)


class _BoardActor:
    """The stage's rung board, held by one Ray actor: every worker of the stage asks it."""

    def __init__(self, board: RungBoard) -> None:
        self.board = board

    def report(self, trial_id: int, epoch: int, value: float) -> str | None:
        return self.board.report(trial_id, epoch, value)


@dataclass(frozen=True)
class _RemoteBoard:
    """What a worker holds (pickled into its task): the rungs, and the actor to ask."""

    rungs: tuple[int, ...]
    actor: Any

    def report(self, trial_id: int, epoch: int, value: float) -> str | None:
        import ray

        answer: str | None = ray.get(self.actor.report.remote(trial_id, epoch, value))
        return answer


def _remote_board(ray: Any, board: RungBoard | None) -> _RemoteBoard | None:
    if board is None or not board.rungs:
        return None
    # no CPU: it only answers, and must not wait behind the trials for a slot
    actor = ray.remote(_BoardActor).options(num_cpus=0).remote(board)
    return _RemoteBoard(board.rungs, actor)


class _Queue(deque[TrialTask]):
    """Trials waiting for a task: requeued ones first, then `source`'s, drawn only as bundles
    take them (a stage's trials are never all in memory); its length counts the source's
    `__length_hint__`, so bundles are sized by what is left of the stage."""

    def __init__(self, source: Iterable[Drawn]) -> None:
        super().__init__()
        self._source = iter(source)

    def _fill(self) -> bool:
        """A trial is waiting; False when the source has none, for good or not yet (asked
        again on the next round while trials run)."""
        if not super().__len__():
            task = next(self._source, None)
            if task is None:
                return False
            self.append(task)
        return True

    def __bool__(self) -> bool:
        return self._fill()

    def __len__(self) -> int:
        return super().__len__() + operator.length_hint(self._source)

    def __getitem__(self, index: SupportsIndex) -> TrialTask:  # type: ignore[override]
        self._fill()
        return super().__getitem__(index)

    def popleft(self) -> TrialTask:
        self._fill()
        return super().popleft()


class RayExecutor:
    """Runs trials as streaming Ray tasks on a local Ray or an existing cluster."""

    def __init__(self, workload: Workload, options: RayOptions) -> None:
        import ray

        self.workload = workload
        self.options = options
        self._owns_ray = not ray.is_initialized()  # an API caller may have started Ray
        self._lease: local_ray.Lease | None = None
        self._session: Path | None = None  # of the private Ray this executor started
        self._guard: Any = None  # ends that Ray and its session even after `kill -9`
        if self._owns_ray:
            self._lease = _connect(options, workload.search_path)
            self._session = ray_log.session_dir()
        if self._session is not None:
            self._guard = session_guard.start(self._session, options.keep_logs, ray_log.ray_pids())
        self._sigterm = _stop_on_sigterm()  # after ray.init, which installs its own handler
        self._driver = DriverContext.here() if self._lease else None
        try:
            self.slots = _slots(ray, options)
        except ClusterError:
            self._disconnect(ray)
            raise
        self._remote: Any = ray.remote(_bundle_task).options(
            num_returns="streaming",
            num_cpus=options.cpus_per_trial,
            num_gpus=options.gpus_per_trial,
            max_retries=0,  # hpsearch retries lost trials itself, as new attempts
            scheduling_strategy="SPREAD",
        )
        self._threads = max(1, math.floor(options.cpus_per_trial))
        # stored once, not pickled into every task: a notebook function carries its globals
        self._workload_ref = ray.put(workload)
        self._inflight: dict[Any, dict[int, TrialTask]] = {}
        self._trial_seconds = 0.0
        self._trials_timed = 0
        self._started: set[int] = set()  # trials whose current attempt reported its start
        self._isolate: set[int] = set()  # trials lost with others: each runs alone next
        self._latest: dict[int, Checkpointed] = {}  # running trials' latest checkpoints
        self._board: _RemoteBoard | None = None  # the stage's rung board (ASHA), if any
        self._running: dict[Any, tuple[int, float]] = {}  # task -> its trial now, since when
        self._last_epoch: dict[int, int] = {}
        self._stopping: dict[Any, tuple[int, str]] = {}  # task cancelled -> trial, why
        self._nodes: dict[Any, str | None] = {}  # task -> the node it runs on

    def run(self, tasks: Iterable[Drawn], board: RungBoard | None = None) -> Iterator[list[Event]]:
        import ray

        queue = _Queue(tasks)
        retries: dict[int, int] = {}
        self._board = _remote_board(ray, board)
        while queue or self._inflight:
            self._submit(queue)
            ready = self._ready(ray)
            for gen in ready:
                yield self._next_events(ray, gen, queue, retries)
            self._stop_overdue(ray)
            if not ready:
                dead = _dead_ray_processes()
                if dead:  # sooner than Ray's own verdict on the tasks (~15 s)
                    raise ClusterLost(_lost_cluster(f"Ray's {', '.join(dead)} died"))
                yield []  # nothing arrived this second: the driver still updates its progress

    def _submit(self, queue: deque[TrialTask]) -> None:
        while queue and len(self._inflight) < self.slots * IN_FLIGHT_PER_SLOT:
            bundle = self._take_bundle(queue)
            gen = self._remote.remote(
                self._workload_ref, bundle, self._threads, FLUSH_SECONDS, self._driver, self._board
            )
            self._inflight[gen] = {t.trial_id: t for t in bundle}

    def _take_bundle(self, queue: deque[TrialTask]) -> list[TrialTask]:
        """The next trials for one task; a trial under suspicion of crashing runs alone."""
        if queue[0].trial_id in self._isolate:
            return [queue.popleft()]
        size = self._bundle_size(len(queue))
        bundle: list[TrialTask] = []
        while queue and len(bundle) < size and queue[0].trial_id not in self._isolate:
            bundle.append(queue.popleft())
        return bundle

    def _bundle_size(self, queued: int) -> int:
        if not self._trials_timed:
            return 1
        mean = self._trial_seconds / self._trials_timed
        fair_share = math.ceil(queued / (self.slots * IN_FLIGHT_PER_SLOT))
        return max(1, min(int(BUNDLE_SECONDS / max(mean, 1e-6)), fair_share))

    def _ready(self, ray: Any) -> list[Any]:
        gens = list(self._inflight)
        ready: list[Any]
        ready, rest = ray.wait(gens, num_returns=1, timeout=1.0)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return ready

    def _next_events(
        self, ray: Any, gen: Any, queue: deque[TrialTask], retries: dict[int, int]
    ) -> list[Event]:
        unfinished = self._inflight[gen]
        try:
            events: list[Event] = ray.get(next(gen))
        except StopIteration:
            del self._inflight[gen]
            self._nodes.pop(gen, None)
            if gen in self._stopping or not unfinished:
                return self._stopped(gen, unfinished, queue)
            raise ClusterLost(_lost_cluster("Ray ended a task before its trials ran")) from None
        except ray.exceptions.RayError as exc:
            del self._inflight[gen]
            if gen in self._stopping:  # we killed its worker: a trial ran past its limit
                return self._stopped(gen, unfinished, queue)
            self._running.pop(gen, None)
            node = self._nodes.pop(gen, None)
            if not isinstance(exc, ray.exceptions.RayTaskError) and self._node_lost(ray, exc, node):
                lost = f"worker lost with its node: {first_line(exc)}"
                return self._stopped(gen, unfinished, queue, lost)
            return self._failed(ray, exc, unfinished, queue, retries)
        self._track(gen, events, unfinished)
        return events

    def _node_lost(self, ray: Any, exc: Exception, node: str | None) -> bool:
        """Whether Ray lost the node the task ran on (not just the trial's worker process).

        Raises ClusterLost when this driver's own Ray is gone (its local raylet, a process of
        its private Ray, the GCS) or no node is left: the stage stops, nothing is charged.
        """
        dead = _dead_ray_processes()
        if dead or isinstance(
            exc, ray.exceptions.LocalRayletDiedError | ray.exceptions.RaySystemError
        ):
            detail = f"Ray's {', '.join(dead)} died" if dead else first_line(exc)
            raise ClusterLost(_lost_cluster(detail))
        alive = _alive_nodes(ray)
        if not alive:
            raise ClusterLost(_lost_cluster(first_line(exc)))
        return isinstance(exc, ray.exceptions.NodeDiedError) or (
            node is not None and node not in alive
        )

    def _failed(
        self,
        ray: Any,
        exc: Exception,
        unfinished: dict[int, TrialTask],
        queue: deque[TrialTask],
        retries: dict[int, int],
    ) -> list[Event]:
        if isinstance(exc, ray.exceptions.RayTaskError):  # the worker code raised: no retry helps
            reason = _task_error(exc)
            for trial_id in unfinished:
                self._latest.pop(trial_id, None)
            return [
                Ended(t.trial_id, t.attempt, Status.FAILED, reason, 0.0)
                for t in unfinished.values()
            ]
        return self._lost(list(unfinished.values()), exc, queue, retries)  # its worker died

    def _track(self, gen: Any, events: list[Event], unfinished: dict[int, TrialTask]) -> None:
        for event in events:
            if isinstance(event, Started):
                self._started.add(event.trial_id)
                self._nodes[gen] = event.node_id
                self._running[gen] = (event.trial_id, time.monotonic())
                self._last_epoch[event.trial_id] = event.resumed_after
            elif isinstance(event, EpochDone):
                self._last_epoch[event.trial_id] = event.epoch
            elif isinstance(event, Checkpointed):
                self._latest[event.trial_id] = event
            elif isinstance(event, Ended):
                self._started.discard(event.trial_id)
                self._last_epoch.pop(event.trial_id, None)
                self._latest.pop(event.trial_id, None)
                unfinished.pop(event.trial_id, None)
                if self._running.get(gen, (None,))[0] == event.trial_id:
                    del self._running[gen]
                self._trial_seconds += event.seconds
                self._trials_timed += 1

    def _stop_overdue(self, ray: Any) -> None:
        """Kill the worker of each trial past its time limit (a hung trial may never return
        to Python: only ending its process is sure to stop it)."""
        limit = self.options.trial_timeout
        if limit is None:
            return
        now = time.monotonic()
        for gen, (trial_id, since) in list(self._running.items()):
            if gen in self._stopping or now - since <= limit:
                continue
            epoch = self._last_epoch.get(trial_id, 0) + 1
            self._stopping[gen] = (trial_id, f"timed out after {limit:g} s at epoch {epoch}")
            try:
                ray.cancel(gen, force=True)
            except Exception:  # the task ended meanwhile: its events tell
                pass

    def _stopped(
        self,
        gen: Any,
        unfinished: dict[int, TrialTask],
        queue: deque[TrialTask],
        reason: str = "",
    ) -> list[Event]:
        """A task ended by us or by its node's loss: not its trials' fault. The trial whose
        worker we killed for its time limit fails for good (no retry); the others run again
        uncharged, as a new attempt if theirs had started."""
        self._running.pop(gen, None)
        self._nodes.pop(gen, None)
        culprit, reason = self._stopping.pop(gen, (None, reason))
        events: list[Event] = []
        again: list[TrialTask] = []
        for task in unfinished.values():
            started = task.trial_id in self._started
            self._started.discard(task.trial_id)
            if task.trial_id == culprit:
                self._latest.pop(task.trial_id, None)
                seconds = self.options.trial_timeout or 0.0
                events.append(Ended(task.trial_id, task.attempt, Status.FAILED, reason, seconds))
            elif started:
                why = reason if culprit is None else f"worker stopped: {reason}"
                events.append(Lost(task.trial_id, task.attempt, why))
                again.append(self._retry(task))
            else:
                again.append(task)
        queue.extendleft(reversed(again))
        return events

    def _lost(
        self,
        tasks: list[TrialTask],
        exc: Exception,
        queue: deque[TrialTask],
        retries: dict[int, int],
    ) -> list[Event]:
        """Requeue the unfinished trials of a task whose worker or node died.

        Alone in its task, the trial is to blame: it is charged a retry and runs again as a new
        attempt. Lost together with others, the culprit is unknown (a worker's last events die
        with it): nobody is charged, and each of them runs alone next time. Trials that had
        reported their start run again as a new attempt, so the lost attempt's rows stay.
        """
        reason = f"worker lost: {first_line(exc)}"
        if len(tasks) > 1:
            started = [t for t in tasks if t.trial_id in self._started]
            self._started.difference_update(t.trial_id for t in started)
            self._isolate.update(t.trial_id for t in tasks)
            again = {t.trial_id: self._retry(t) for t in started}
            queue.extendleft(reversed([again.get(t.trial_id, t) for t in tasks]))
            return [Lost(t.trial_id, t.attempt, reason) for t in started]
        (task,) = tasks
        used = retries.get(task.trial_id, 0)
        if used >= self.options.max_retries:
            note = f"{reason} (gave up after {used} retries)"
            return [Ended(task.trial_id, task.attempt, Status.FAILED, note, 0.0)]
        retries[task.trial_id] = used + 1
        self._started.discard(task.trial_id)
        queue.appendleft(self._retry(task))
        return [Lost(task.trial_id, task.attempt, reason)]

    def _retry(self, task: TrialTask) -> TrialTask:
        """The next attempt, from the latest checkpoint the lost one sent (if it sent one)."""
        latest = self._latest.pop(task.trial_id, None)
        if latest is None:
            return replace(task, attempt=task.attempt + 1)
        return replace(
            task, attempt=task.attempt + 1, restore=latest.files, restore_epoch=latest.epoch
        )

    def close(self) -> None:
        import ray

        for gen in self._inflight:
            try:
                ray.cancel(gen, force=True)
            except Exception:  # already finished or its worker is gone
                pass
        self._inflight.clear()
        self._board = None  # its last handle: Ray ends the actor
        self._disconnect(ray)

    def _disconnect(self, ray: Any) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None
        if self._owns_ray:
            ray.shutdown()
            ray_log.end_session(self._session, self.options.keep_logs)
            self._session = None
        if self._guard is not None:
            session_guard.stop(self._guard)
            self._guard = None
        if self._lease is not None:
            self._lease.release()
            self._lease = None


def _stop_on_sigterm() -> Any:
    """SIGTERM raises `Terminated` (a KeyboardInterrupt: results so far are committed, as after
    Ctrl-C) instead of Ray's handler, which dumps a C++ stack; returns the handler it replaced.
    Only the main thread may set handlers: elsewhere (a notebook's worker thread) nothing."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated) or signal.SIG_DFL


_sigterm_seen = False


def _raise_terminated(_signum: int, _frame: Any) -> None:
    global _sigterm_seen
    _sigterm_seen = True
    raise Terminated()


def sigterm_seen() -> bool:
    """Whether SIGTERM stopped this process's stage: raised inside `ray.wait`, our
    `Terminated` reaches the caller as Ray's plain KeyboardInterrupt."""
    return _sigterm_seen


def _lost_cluster(detail: str) -> str:
    return f"Ray failed mid-stage ({detail}); no trial was charged for it"


def _dead_ray_processes() -> list[str]:
    """The processes of this command's private local Ray that died (none elsewhere)."""
    import ray

    node: Any = ray._private.worker._global_node
    if node is None or not node.head:
        return []
    return sorted({name for name, _ in node.dead_processes()})


def _alive_nodes(ray: Any) -> set[str]:
    """Ids of the nodes the GCS reports alive; empty when the GCS itself does not answer."""
    gcs = ray.get_runtime_context().gcs_address
    if not local_ray.answers(gcs):
        return set()
    try:
        return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    except Exception:  # the GCS went away meanwhile
        return set()


def _in_ray_job() -> bool:
    """Whether this process is the driver of a Ray Job (`hpsearch submit`)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def _task_error(exc: Exception) -> str:
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(exc).strip().splitlines()[-1]


def _connect(options: RayOptions, search_path: Path) -> local_ray.Lease | None:
    """Join the cluster, else the warm local Ray (its lease), else start a private local Ray."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray_log.divert()
    address = cluster_address(options.address)
    if address:
        _join(address, search_path, {"RAY_USAGE_STATS_ENABLED": "0"})
        return None
    explicit_local = (options.address or os.environ.get("RAY_ADDRESS")) == "local"
    if local_ray.reuse_enabled() and not explicit_local:
        lease = local_ray.acquire(options.cpus or os.cpu_count() or 1)
        if lease is not None:  # None: the warm Ray has another number of CPUs
            try:
                _attach(lease.state.address, search_path)
            except BaseException:
                lease.release()
                raise
            return lease
    _start_private(options, search_path)
    return None


def _worker_sys_path(search_path: Path) -> list[str]:
    """The spec's directory, the current one and PYTHONPATH: what workers import from."""
    given = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    paths = [str(search_path), os.getcwd(), *given, local_ray.source_root()]
    return list(dict.fromkeys(p for p in paths if p))


def _attach(address: str, search_path: Path) -> None:
    """Join the warm local Ray; no runtime_env, so its prestarted workers can take our tasks."""
    loopback_only()
    local_ray.use_warm_token()
    import ray
    from ray.job_config import JobConfig

    try:
        ray.init(
            address=address,
            job_config=JobConfig(_py_driver_sys_path=_worker_sys_path(search_path)),
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
        raise ClusterError(
            f"cannot join the local Ray at {address}: {first_line(exc)} "
            f"(`hpsearch ray stop` ends it; the next command starts a new one)"
        ) from None


def _start_private(options: RayOptions, search_path: Path) -> None:
    """A local Ray for this command alone; it ends with the command.

    Its workers inherit this process's environment, PYTHONPATH included; without a
    runtime_env the workers Ray prestarts can take the first trials (a runtime_env with
    env_vars made every worker start anew, after the runtime-env agent's round trip).
    """
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(_worker_sys_path(search_path))
    try:
        local_ray.start_on_loopback(options.cpus)
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def _join(address: str, search_path: Path, env_vars: dict[str, str]) -> None:
    """Join an existing cluster; the spec's directory travels to the workers as working_dir."""
    check_cluster(address)
    import ray

    runtime_env: dict[str, Any] | None = {
        "working_dir": str(search_path),
        "excludes": list(UPLOAD_EXCLUDES),
        "env_vars": env_vars,
    }
    if _in_ray_job():  # the job's runtime_env already brought the files
        runtime_env = None
    try:
        ray.init(
            address=address,
            runtime_env=runtime_env,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        raise ClusterError(
            f"--address {address}: cannot join the Ray cluster: {first_line(exc)}"
        ) from None


def _slots(ray: Any, options: RayOptions) -> int:
    """How many trials can run at once; refuse requests no node can ever satisfy."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    biggest_cpu = max((r.get("CPU", 0.0) for r in nodes), default=0.0)
    if options.cpus_per_trial > biggest_cpu:
        raise ClusterError(
            f"--cpus-per-trial {options.cpus_per_trial}: no Ray node has that many CPUs "
            f"(largest has {biggest_cpu:g})"
        )
    total = ray.cluster_resources()
    slots = total.get("CPU", 0.0) / options.cpus_per_trial if options.cpus_per_trial else 1e9
    if options.gpus_per_trial:
        gpus = total.get("GPU", 0.0)
        if gpus < options.gpus_per_trial:
            raise ClusterError(
                f"--gpus-per-trial {options.gpus_per_trial}: the cluster has {gpus:g} GPUs"
            )
        slots = min(slots, gpus / options.gpus_per_trial)
    return max(1, int(slots))
