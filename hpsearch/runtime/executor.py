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
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, SupportsIndex

from hpsearch.errors import ClusterError, Terminated
from hpsearch.registry import Trainable, resolve
from hpsearch.runtime import local_ray
from hpsearch.runtime.cluster import UPLOAD_EXCLUDES, check_cluster, cluster_address, first_line
from hpsearch.runtime.local_ray import loopback_only
from hpsearch.runtime.worker import Ended, Event, Lost, Started, TrialTask, run_bundle
from storage import Status

FLUSH_SECONDS = 0.05  # a worker sends at most one message per trial bundle this often
BUNDLE_SECONDS = 1.0  # aim for bundles of about this much work
IN_FLIGHT_PER_SLOT = 2


class Executor(Protocol):
    slots: int

    def run(self, tasks: Iterable[TrialTask]) -> Iterator[list[Event]]: ...

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

    def run(self, tasks: Iterable[TrialTask]) -> Iterator[list[Event]]:
        fn = self.workload.resolve(self.workload.search_path)
        for task in tasks:
            yield from run_bundle(fn, [task], self.workload.metric, "local", 0.0)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    cpus: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_retries: int = 2


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
    yield from run_bundle(fn, tasks, workload.metric, node_id, flush_seconds)


class _Queue(deque[TrialTask]):
    """Trials waiting for a task: requeued ones first, then `source`'s, drawn only as bundles
    take them (a stage's trials are never all in memory); its length counts the source's
    `__length_hint__`, so bundles are sized by what is left of the stage."""

    def __init__(self, source: Iterable[TrialTask]) -> None:
        super().__init__()
        self._source = iter(source)

    def _fill(self) -> bool:
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
        if self._owns_ray:
            self._lease = _connect(options, workload.search_path)
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

    def run(self, tasks: Iterable[TrialTask]) -> Iterator[list[Event]]:
        import ray

        queue = _Queue(tasks)
        retries: dict[int, int] = {}
        while queue or self._inflight:
            self._submit(queue)
            for gen in self._ready(ray):
                yield self._next_events(ray, gen, queue, retries)

    def _submit(self, queue: deque[TrialTask]) -> None:
        while queue and len(self._inflight) < self.slots * IN_FLIGHT_PER_SLOT:
            bundle = self._take_bundle(queue)
            gen = self._remote.remote(
                self._workload_ref, bundle, self._threads, FLUSH_SECONDS, self._driver
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
            return []
        except ray.exceptions.RayTaskError as exc:  # the worker code raised: no retry helps
            del self._inflight[gen]
            reason = _task_error(exc)
            return [
                Ended(t.trial_id, t.attempt, Status.FAILED, reason, 0.0)
                for t in unfinished.values()
            ]
        except ray.exceptions.RayError as exc:  # worker process or node died
            del self._inflight[gen]
            return self._lost(list(unfinished.values()), exc, queue, retries)
        for event in events:
            if isinstance(event, Started):
                self._started.add(event.trial_id)
            elif isinstance(event, Ended):
                self._started.discard(event.trial_id)
                unfinished.pop(event.trial_id, None)
                self._trial_seconds += event.seconds
                self._trials_timed += 1
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
            again = {t.trial_id: replace(t, attempt=t.attempt + 1) for t in started}
            queue.extendleft(reversed([again.get(t.trial_id, t) for t in tasks]))
            return [Lost(t.trial_id, t.attempt, reason) for t in started]
        (task,) = tasks
        used = retries.get(task.trial_id, 0)
        if used >= self.options.max_retries:
            note = f"{reason} (gave up after {used} retries)"
            return [Ended(task.trial_id, task.attempt, Status.FAILED, note, 0.0)]
        retries[task.trial_id] = used + 1
        self._started.discard(task.trial_id)
        queue.appendleft(replace(task, attempt=task.attempt + 1))
        return [Lost(task.trial_id, task.attempt, reason)]

    def close(self) -> None:
        import ray

        for gen in self._inflight:
            try:
                ray.cancel(gen, force=True)
            except Exception:  # already finished or its worker is gone
                pass
        self._inflight.clear()
        self._disconnect(ray)

    def _disconnect(self, ray: Any) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None
        if self._owns_ray:
            ray.shutdown()
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


def _raise_terminated(_signum: int, _frame: Any) -> None:
    raise Terminated()


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
