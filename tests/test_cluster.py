"""hpsearch on a real multi-node Ray cluster: a head and a worker node, each with its own CPU.

The cluster lives in a private network and PID namespace (`unshare`), all on 127.0.0.1, with
Ray's token authentication as `ray start` sets it up; the CLI runs inside the namespace through
`nsenter`. Killing the namespace's first process tears everything down.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import make_url

import storage
from tests.conftest import db_rows, query, run_cli

CLUSTER_SH = r"""
set -u
ip link set lo up
export RAY_USAGE_STATS_ENABLED=0
temp=$1 ready=$2
if [ ! -s "$HOME/.ray/auth_token" ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
  ray get-auth-token --generate >/dev/null
fi
export RAY_AUTH_MODE=token
ray start --head --node-ip-address 127.0.0.1 --port 6379 --num-cpus 1 --temp-dir "$temp" \
  --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port 8265 \
  --disable-usage-stats >"$temp.head.log" 2>&1 || exit 1
# its own temp dir, as on another machine: nodes sharing one would delete each other's
# unpacked runtime_env working dirs (a Ray Job's current directory among them)
ray start --address 127.0.0.1:6379 --node-ip-address 127.0.0.1 --num-cpus 1 \
  --temp-dir "$temp-worker" --dashboard-agent-listen-port 52400 --metrics-export-port 52401 \
  --disable-usage-stats >"$temp.worker.log" 2>&1 || exit 1
for _ in $(seq 60); do
  [ "$(ray status --address 127.0.0.1:6379 2>/dev/null | grep -c ' node_')" = 2 ] && break
  sleep 1
done
echo ok >"$ready"
while :; do sleep 1; done
"""

TRAINABLE = """
import time

SHIPPED = float("runtime_resources" in __file__)  # imported from the uploaded working_dir

def train(params, *, epochs, seed):
    for epoch in range(1, epochs + 1):
        time.sleep(params["sleep"])
        # x rounded to 0.1: close trials tie (and ties go on at an ASHA rung)
        acc = round(params["x"], 1) * epoch / epochs
        yield {"val_acc": acc, "val_loss": 1.0 / epoch, "shipped": SHIPPED}

def saving(params, *, epochs, seed, checkpoint_dir):
    for epoch, metrics in enumerate(train(params, epochs=epochs, seed=seed), start=1):
        with open(f"{checkpoint_dir}/state.txt", "w") as out:
            out.write(f"{params['x']!r} {epoch}")
        yield metrics
"""

SPEC = """
name = "{name}"
trainable = "clustertrain:{trainable}"
metric = "val_acc"

[fixed]
sleep = {sleep}

[space]
x = {{ type = "uniform", low = 0.0, high = 1.0 }}

[coarse]
trials = {trials}
epochs = {epochs}
"""


@dataclass(frozen=True)
class Cluster:
    init_pid: int  # host PID of the namespace's first process
    head_node: str
    worker_node: str
    worker_raylet: int  # host PID

    def env(self) -> dict[str, str]:
        """The CLI's environment: no RAY_AUTH_MODE, hpsearch finds ~/.ray/auth_token itself."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        return {**env, "RAY_USAGE_STATS_ENABLED": "0"}

    def command(self, *args: str, cwd: Path) -> list[str]:
        nsenter = ["nsenter", "-t", str(self.init_pid), "-n", "-p", "-m", f"--wd={cwd}", "--"]
        return [*nsenter, sys.executable, "-m", "hpsearch", *args]

    def run(
        self, *args: str, cwd: Path, timeout: float = 180, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*args, cwd=cwd),
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, cwd: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args, cwd=cwd),
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def _namespace_processes(init_pid: int) -> dict[int, str]:
    """Host PID -> command line of every process in the cluster's PID namespace."""
    ns = os.readlink(f"/proc/{init_pid}/ns/pid")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") == ns:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # exited meanwhile
            continue
    return {pid: cmd.decode(errors="replace") for pid, cmd in found.items()}


def _raylets(init_pid: int) -> dict[str, tuple[int, bool]]:
    """node id -> (host PID of its raylet, is it the head)."""
    raylets = {}
    for pid, cmd in _namespace_processes(init_pid).items():
        match = re.search(r"raylet/raylet .*--node_id=([0-9a-f]+)", cmd)
        if match:
            raylets[match.group(1)] = (pid, " --head" in cmd)
    return raylets


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    temp = Path(tempfile.mkdtemp(prefix="hpsray", dir="/tmp"))  # short: Ray's socket paths
    script = temp / "cluster.sh"
    script.write_text(CLUSTER_SH)
    ready = temp / "ready"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a plain start
    proc = subprocess.Popen(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "bash", str(script)]
        + [str(temp / "ray"), str(ready)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    init_pid = None
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, "the cluster failed to start: " + _logs(temp)
            assert time.monotonic() < deadline, "the cluster did not start: " + _logs(temp)
            time.sleep(0.3)
        (init_pid,) = _children(proc.pid)
        raylets = _raylets(init_pid)
        assert len(raylets) == 2, raylets
        head = next(node for node, (_, is_head) in raylets.items() if is_head)
        worker = next(node for node in raylets if node != head)
        yield Cluster(init_pid, head, worker, raylets[worker][0])
    finally:
        if init_pid is None:
            kids = _children(proc.pid) if proc.poll() is None else []
            init_pid = kids[0] if kids else None
        if init_pid is not None:
            os.kill(init_pid, signal.SIGKILL)  # ends every process of the namespace
        proc.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def _logs(temp: Path) -> str:
    return " | ".join(
        p.read_text()[-400:] for p in temp.parent.glob(temp.name + "/ray.*.log") if p.exists()
    )


def study(
    path: Path, name: str, trials: int, epochs: int, sleep: float, trainable: str = "train"
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "clustertrain.py").write_text(TRAINABLE)
    spec = path / "study.toml"
    spec.write_text(
        SPEC.format(name=name, trials=trials, epochs=epochs, sleep=sleep, trainable=trainable)
    )
    return spec


def test_a_stage_spreads_trials_over_both_nodes(cluster: Cluster, tmp_path: Path) -> None:
    """...and each epoch's checkpoint, made on either node, ends up in the driver's store; then
    an ASHA stage (one rung at epoch 1) whose board, a Ray actor, both nodes' workers ask,
    drawing trials until its 8 x 2 epochs are spent."""
    spec = study(tmp_path / "study", "spread", trials=8, epochs=2, sleep=0.25, trainable="saving")
    db = tmp_path / "results.db"
    result = cluster.run(
        "coarse", str(spec), "--db", str(db), "--address", "127.0.0.1:6379", "-q", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "8 trials (8 completed)" in result.stdout
    nodes = {n for (n,) in query(db, "SELECT DISTINCT node_id FROM trials")}
    assert nodes == {cluster.head_node, cluster.worker_node}
    assert query(db, "SELECT count(*) FROM metrics") == [(8 * 2 * 3,)]
    # every worker ran the trainable from the runtime_env copy of the spec's directory
    assert query(db, "SELECT DISTINCT value FROM metrics WHERE name = 'shipped'") == [(1.0,)]
    kept = query(
        db, "SELECT t.node_id, p.value, c.epoch, c.uri, c.sha256 FROM checkpoints c "
        "JOIN trials t USING (trial_id) JOIN params p ON p.trial_id = t.trial_id AND p.name = 'x'"
        " WHERE c.epoch = 2"
    )  # fmt: skip
    assert {node for node, *_ in kept} == {cluster.head_node, cluster.worker_node}
    for _, x, epoch, uri, sha in kept:  # the last epoch of each trial (all 8 are kept)
        content = Path(uri).read_bytes()
        assert content == f"{x!r} {epoch}".encode()
        assert hashlib.sha256(content).hexdigest() == sha
        assert Path(uri).is_relative_to(tmp_path / "results.artifacts")

    asha = study(tmp_path / "asha", "spread-asha", trials=8, epochs=2, sleep=0.25)
    result = cluster.run(
        "coarse", str(asha), "--db", str(db), "--address", "127.0.0.1:6379", "-q",
        "--schedule", "asha", "--seed", "5", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = re.search(r"(\d+) trials \((\d+) completed, (\d+) stopped\)", result.stdout)
    assert summary, result.stdout
    n, done, stopped = map(int, summary.groups())
    assert n == done + stopped > 8  # the epochs the rung saved bought more trials
    stage = "(SELECT max(stage_id) FROM stages)"
    nodes = {
        n for (n,) in query(db, f"SELECT DISTINCT node_id FROM trials WHERE stage_id = {stage}")
    }
    assert nodes == {cluster.head_node, cluster.worker_node}
    assert query(db, f"SELECT n_trials, epoch_budget FROM stages WHERE stage_id = {stage}") == [
        (n, 16)
    ]
    # seed 5: trials 0 and 1 (x 0.81 and 0.81, both 0.8 rounded) run first and tie at the
    # rung; trials 2-7 (x <= 0.52) reach it later with two better values recorded
    completed = f"SELECT number FROM trials WHERE stage_id = {stage} AND status = 'completed'"
    assert {0, 1} <= {number for (number,) in query(db, completed)}
    errors = query(db, "SELECT DISTINCT error FROM trials WHERE status = 'stopped'")
    assert all(e.startswith("stopped at epoch 1: val_acc ") for (e,) in errors), errors
    rows = f"SELECT count(*) FROM metrics JOIN trials USING (trial_id) WHERE stage_id = {stage}"
    assert query(db, rows) == [((2 * done + stopped) * 3,)]  # a stopped trial: no epoch 2


@pytest.mark.parametrize(
    ("env", "phrase"),
    [
        ({"RAY_AUTH_TOKEN": "not-the-cluster-token"}, "rejected the auth token"),
        ({"HOME": "/nonexistent"}, "no token was found"),
        ({"RAY_AUTH_MODE": "disabled"}, "RAY_AUTH_MODE=disabled"),
    ],
    ids=["wrong token", "no token", "auth disabled here"],
)
def test_token_problems_are_one_clear_line(
    cluster: Cluster, tmp_path: Path, env: dict[str, str], phrase: str
) -> None:
    spec = study(tmp_path, "auth", trials=2, epochs=1, sleep=0.0)
    db = tmp_path / "results.db"
    result = cluster.run(
        "coarse", str(spec), "--db", str(db), "--address", "127.0.0.1:6379", cwd=tmp_path,
        env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0], result.stderr
    assert lines[0].startswith("hpsearch: error: --address 127.0.0.1:6379: ")
    assert not db.exists()  # the address is checked before the database is even created


def test_submit_runs_a_coarse_stage_as_a_ray_job(cluster: Cluster, tmp_path: Path) -> None:
    study(tmp_path / "project", "submitted", trials=4, epochs=2, sleep=0.0, trainable="saving")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    address = "http://127.0.0.1:8265"
    result = cluster.run(
        "submit", "../project/study.toml", "coarse", "--address", address,
        "--db", "results.db", "--trials", "4", "--artifacts", "store", cwd=client_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    job_id = re.search(r"submitted job (\S+):", result.stderr).group(1)
    db = client_dir / "results.db"  # the relative --db became absolute, not the job's copy
    assert f"database: {db}" in result.stderr
    assert query(db, "SELECT status, count(*) FROM trials GROUP BY 1") == [("completed", 4)]
    stored = [Path(uri) for (uri,) in query(db, "SELECT uri FROM checkpoints")]
    # each trial keeps its last epoch (and its best, when that is an earlier one)
    assert query(db, "SELECT count(DISTINCT trial_id) FROM checkpoints WHERE epoch = 2") == [(4,)]
    assert all(p.is_relative_to(client_dir / "store") for p in stored)
    assert all(p.is_file() for p in stored)  # --artifacts reached the job, made absolute
    assert "coarse stage 1: 4 trials (4 completed)" in result.stdout
    assert f"job {job_id}: SUCCEEDED" in result.stderr

    logs = cluster.run("jobs", "logs", job_id, "--address", address, cwd=client_dir)
    assert logs.returncode == 0, logs.stderr
    assert "coarse stage 1: 4 trials (4 completed)" in logs.stdout
    status = cluster.run("jobs", "status", job_id, "--address", address, cwd=client_dir)
    assert status.returncode == 0 and f"{job_id}: SUCCEEDED" in status.stdout
    listed = cluster.run("jobs", "list", "--address", address, cwd=client_dir)
    assert job_id in listed.stdout and "SUCCEEDED" in listed.stdout
    missing = cluster.run("jobs", "logs", "nosuchjob", "--address", address, cwd=client_dir)
    assert missing.returncode == 2 and "nosuchjob" in missing.stderr


def test_submit_no_wait_stop_then_submit_again_resumes(cluster: Cluster, tmp_path: Path) -> None:
    spec = study(tmp_path / "project", "no-wait", trials=6, epochs=10, sleep=0.2)
    db = tmp_path / "results.db"
    env = {"RAY_API_SERVER_ADDRESS": "http://127.0.0.1:8265"}
    submit = ("submit", str(spec), "coarse", "--db", str(db), "--no-wait")
    result = cluster.run(*submit, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    deadline = time.monotonic() + 120
    while not (db.exists() and _completed(db)) and time.monotonic() < deadline:
        time.sleep(0.3)
    stop = cluster.run("jobs", "stop", job_id, cwd=tmp_path, env=env)
    assert stop.returncode == 0 and f"{job_id}: stopping" in stop.stdout, stop.stderr
    for _ in range(60):
        status = cluster.run("jobs", "status", job_id, cwd=tmp_path, env=env)
        if "STOPPED" in status.stdout:
            break
        time.sleep(0.5)
    assert status.returncode == 1 and f"{job_id}: STOPPED" in status.stdout
    assert 0 < _completed(db) < 6

    again = cluster.run(*submit, cwd=tmp_path, env=env)
    follow = cluster.run("jobs", "logs", again.stdout.strip(), "--follow", cwd=tmp_path, env=env)
    assert follow.returncode == 0, follow.stderr
    assert "resuming coarse stage 1" in follow.stdout
    assert "coarse stage 1: 6 trials (6 completed)" in follow.stdout
    assert query(db, "SELECT count(*) FROM stages") == [(1,)]


def _completed(db: Path) -> int:
    try:
        return query(db, "SELECT count(*) FROM trials WHERE status = 'completed'")[0][0]
    except sqlite3.OperationalError:  # the schema is being created
        return 0


def _wait_until(db: Path, sql: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if db.exists() and query(db, sql)[0][0]:
                return
        except sqlite3.OperationalError:  # the driver is creating the schema
            pass
        time.sleep(0.2)
    raise AssertionError(f"never true before the driver ended: {sql}: {proc.communicate()}")


def test_driver_killed_mid_stage_on_the_cluster_then_resumed(
    cluster: Cluster, tmp_path: Path
) -> None:
    spec = study(tmp_path, "lost-driver", trials=10, epochs=4, sleep=0.2)
    db = tmp_path / "results.db"
    args = ("coarse", str(spec), "--db", str(db), "--address", "127.0.0.1:6379", "-q")
    proc = cluster.start(*args, cwd=tmp_path)
    _wait_until(db, "SELECT count(*) >= 3 FROM trials WHERE status = 'completed'", proc)
    (driver,) = _children(proc.pid)  # nsenter's child: the hpsearch process itself
    os.kill(driver, signal.SIGKILL)
    proc.wait(timeout=30)
    rows_before = set(query(db, "SELECT * FROM metrics"))
    left = query(db, "SELECT count(*) FROM trials WHERE status NOT IN ('completed')")[0][0]
    assert left > 0

    result = cluster.run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resuming coarse stage 1: {left} of 10 trials left" in result.stderr
    assert query(db, "SELECT status, count(*) FROM trials GROUP BY 1") == [("completed", 10)]
    assert rows_before <= set(query(db, "SELECT * FROM metrics"))
    assert query(
        db, "SELECT count(*) FROM (SELECT 1 FROM metrics GROUP BY trial_id, attempt, epoch, name"
        " HAVING count(*) > 1)"
    ) == [(0,)]  # fmt: skip
    complete = query(
        db, "SELECT count(DISTINCT trial_id) FROM (SELECT trial_id, attempt FROM metrics "
        "GROUP BY 1, 2 HAVING count(*) = 12)"
    )  # fmt: skip
    assert complete == [(10,)]  # every trial has one complete attempt (4 epochs x 3 metrics)


def test_worker_node_killed_mid_stage(cluster: Cluster, tmp_path: Path) -> None:
    """Runs last: it kills the worker node (its raylet and the raylet's workers)."""
    spec = study(tmp_path, "lost-node", trials=6, epochs=6, sleep=0.3)
    db = tmp_path / "results.db"
    proc = cluster.start(
        "coarse", str(spec), "--db", str(db), "--address", "127.0.0.1:6379", "-q", cwd=tmp_path
    )
    on_worker = (
        "SELECT count(*) FROM trials t JOIN metrics m ON m.trial_id = t.trial_id "
        "AND m.attempt = t.attempts WHERE t.status = 'running' "
        f"AND t.node_id = '{cluster.worker_node}'"
    )
    _wait_until(db, on_worker, proc)
    hit = query(db, on_worker.replace("count(*)", "DISTINCT t.trial_id, m.attempt"))
    victims = _children(cluster.worker_raylet) + [cluster.worker_raylet]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=180)

    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    statuses = query(db, "SELECT status, error FROM trials")
    assert len(statuses) == 6
    assert all(s == "completed" or (s == "failed" and e) for s, e in statuses), statuses
    for trial_id, attempt in hit:  # the attempts that died with the node: rows kept, retried
        kept = f"SELECT count(*) FROM metrics WHERE trial_id = {trial_id} AND attempt = {attempt}"
        assert query(db, kept)[0][0] >= 1, "the lost attempt's rows are gone"
        final = query(db, f"SELECT attempts, node_id FROM trials WHERE trial_id = {trial_id}")
        assert final[0][0] > attempt and final[0][1] == cluster.head_node


def socket_url(url: str) -> str:
    """The same database by the server's Unix socket: the cluster's own network namespace has
    no route to the host's 127.0.0.1, but shares its file system."""
    parts = make_url(url)
    directory = db_rows(url, "SHOW unix_socket_directories")[0][0].split(",")[0].strip()
    return (
        f"postgresql://{parts.username}:{parts.password}@/{parts.database}"
        f"?host={directory}&port={parts.port or 5432}"
    )


def test_submit_with_a_postgres_db_is_read_from_the_users_side(
    cluster: Cluster, tmp_path: Path, pg_url: str
) -> None:
    study(tmp_path / "project", "pg-submitted", trials=6, epochs=2, sleep=0.0)
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    result = cluster.run(
        "submit", "../project/study.toml", "coarse", "--address", "http://127.0.0.1:8265",
        "--db", socket_url(pg_url), "--trials", "6", cwd=client_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "coarse stage 1: 6 trials (6 completed)" in result.stdout
    assert not list(client_dir.iterdir())  # no database file anywhere near the client
    # the user's side: the host, over TCP, with its own URL for the same database
    trials = run_cli("trials", "pg-submitted", "--db", pg_url, "-f", "csv", cwd=tmp_path)
    assert trials.returncode == 0, trials.stderr
    rows = pd.read_csv(io.StringIO(trials.stdout))
    assert list(rows["status"]) == ["completed"] * 6
    nodes = {node for (node,) in db_rows(pg_url, "SELECT DISTINCT node_id FROM trials")}
    assert nodes and nodes <= {cluster.head_node, cluster.worker_node}
    assert db_rows(pg_url, "SELECT count(*) FROM metrics") == [(6 * 2 * 3,)]
    metrics = storage.load_metrics(pg_url, "pg-submitted", names=["shipped"])
    assert set(metrics["value"]) == {1.0}  # the trainable came from the uploaded working dir
