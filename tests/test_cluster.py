"""others.ray_address: a run joins an existing two-node Ray cluster (both nodes on this machine).

The cluster is started with the .venv's `ray start` as a user would (README "Run on a cluster"): a head and a
second node of one CPU each, token auth with a private token (RAY_AUTH_TOKEN, so ~/.ray is never touched), a
private --temp-dir and private ports. `ray stop` is NOT used to end it: it kills every Ray process on the
machine, including other tests' local instances. Each node runs `ray start --block`, so all of that node's
processes (GCS, raylet, agents, workers) stay below one process this test started, and teardown SIGKILLs
exactly that tree (checking start times, so a reused pid is never hit).
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from search_helpers import ROOT, journal_events, tiny_config

ray = pytest.importorskip("ray")

RAY = Path(sys.executable).with_name("ray")  # the .venv's ray CLI, same Ray as the driver


def _free_ports(count: int) -> list[int]:
    """Ports free right now (bound together so they are distinct); a small race with other programs remains."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process, from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            out[int(entry.name)] = (int(fields[1]), fields[19])
    return out


def _tree(root: int) -> dict[int, str]:
    """pid -> start time of `root` and every process below it."""
    table = _table()
    out = {root: table[root][1]} if root in table else {}
    grew = True
    while grew:
        new = {pid: t for pid, (ppid, t) in table.items() if ppid in out and pid not in out}
        out.update(new)
        grew = bool(new)
    return out


def _node_of(pid: int, roots: dict[int, str]) -> str | None:
    """Which node (name in `roots`, keyed by root pid) `pid` runs under, following parent pids."""
    table = _table()
    seen = 0
    while pid in table and seen < 64:
        if pid in roots:
            return roots[pid]
        pid, seen = table[pid][0], seen + 1
    return None


class Cluster:
    """Two `ray start --block` processes (head + one more node) and what is needed to join and end them."""

    def __init__(self, tmp: Path) -> None:
        self.ip = ray.util.get_node_ip_address()
        # Ray's socket paths must stay short (AF_UNIX limit): a short private temp dir, not pytest's tmp_path.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.pids_dir = tmp / "task_pids"
        self.env = dict(
            os.environ,
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
            POPNAS_TASK_PID_DIR=str(self.pids_dir),
            TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONUNBUFFERED="1",
        )
        self.env.pop("RAY_ADDRESS", None)
        ports = _free_ports(14)
        self.port = ports[0]
        self.address = f"{self.ip}:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = {name: tmp / f"ray_{name}.log" for name in ("head", "node2")}
        common = ["--num-cpus=1", "--disable-usage-stats", "--block", f"--temp-dir={self.temp_dir}"]

        def per_node(p: list[int]) -> list[str]:
            return [
                f"--node-manager-port={p[0]}",
                f"--object-manager-port={p[1]}",
                f"--dashboard-agent-listen-port={p[2]}",
                f"--dashboard-agent-grpc-port={p[3]}",
                f"--runtime-env-agent-port={p[4]}",
                f"--metrics-export-port={p[5]}",
            ]

        self.args = {
            "head": [
                "start",
                "--head",
                f"--port={self.port}",
                f"--ray-client-server-port={ports[1]}",
                "--include-dashboard=false",
                *per_node(ports[2:8]),
                *common,
            ],
            "node2": ["start", f"--address={self.address}", *per_node(ports[8:14]), *common],
        }

    def start(self, name: str) -> None:
        handle = self.logs[name].open("w")
        self.procs[name] = subprocess.Popen(
            [str(RAY), *self.args[name]], stdout=handle, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT
        )

    def wait_for_nodes(self, count: int, timeout: float = 180) -> None:
        """Until `count` alive nodes (and their CPUs) are registered with the head."""
        code = (
            "import ray, sys, time\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR')\n"
            f"deadline = time.monotonic() + {timeout}\n"
            f"while sum(n['Alive'] for n in ray.nodes()) < {count} and time.monotonic() < deadline:\n"
            "    time.sleep(0.5)\n"
            "print(sum(n['Alive'] for n in ray.nodes()), ray.cluster_resources().get('CPU'))\n"
        )
        check = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=ROOT,
        )
        try:
            while check.poll() is None:  # a node whose `ray start` exits (bad flag, port taken) fails at once
                dead = [name for name, p in self.procs.items() if p.poll() is not None]
                assert not dead, f"ray start of {dead} exited\n" + self.describe()
                time.sleep(0.2)
        finally:
            if check.poll() is None:
                check.kill()
        out, err = check.communicate(timeout=30)
        assert check.returncode == 0 and out.split()[:1] == [str(count)], self.describe(err[-2000:])

    def describe(self, extra: str = "") -> str:
        return "\n".join(f"--- {n}:\n{p.read_text()[-2000:]}" for n, p in self.logs.items() if p.exists()) + extra

    def roots(self) -> dict[int, str]:
        return {p.pid: name for name, p in self.procs.items()}

    def kill(self) -> None:
        """SIGKILL every process below the `ray start --block` processes this test started, nothing else."""
        victims: dict[int, str] = {}
        for proc in self.procs.values():
            victims.update(_tree(proc.pid))
        for pid, started in victims.items():
            if _table().get(pid, (0, None))[1] == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            table = _table()
            if not any(table.get(pid, (0, None))[1] == t for pid, t in victims.items()):
                break
            time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start("head")
        c.wait_for_nodes(1)
        c.start("node2")
        c.wait_for_nodes(2)
        yield c
    finally:
        c.kill()


@pytest.mark.slow
def test_a_run_on_a_two_node_cluster_trains_every_network_once_on_both_nodes(tmp_path: Path, cluster: Cluster) -> None:
    """run.py -j with others.ray_address = head's host:port and workers 2: results land in the driver's folder."""
    cfg = tiny_config(
        tmp_path,
        probe=False,
        pipeline=["search"],
        strategy="random",
        search_strategy__max_networks=4,
        search_strategy__b1_max_networks=3,
        others__workers=2,
        others__ray_address=cluster.address,
    )
    # The driver needs the cluster's auth mode and token, nothing else (the pid hook is read by the nodes' workers).
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.env["RAY_AUTH_TOKEN"])
    os.environ.pop("RAY_ADDRESS", None)
    try:
        # The driver runs in another folder than the nodes' `ray start` (ROOT), with the default relative
        # --logs-dir: the workers must still write into the driver's run folder.
        driver_cwd = tmp_path / "driver"
        driver_cwd.mkdir()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        with (tmp_path / "out").open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "run.py"), "-j", str(cfg), "--name", "cl"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=driver_cwd,
            )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    nodes: dict[str, str | None] = {}  # "<network_id>-<pid>" -> node whose `ray start` the task's worker runs under
    try:
        deadline = time.monotonic() + 900
        while proc.poll() is None and time.monotonic() < deadline:
            if cluster.pids_dir.is_dir():
                for entry in cluster.pids_dir.iterdir():
                    if entry.name not in nodes:
                        nodes[entry.name] = _node_of(int(entry.name.split("-")[1]), cluster.roots())
            time.sleep(0.05)
        output = (tmp_path / "out").read_text()
        assert proc.wait(timeout=60) == 0, output[-3000:] + cluster.describe()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "2 workers (2 CPUs, cluster " + cluster.address in output, output[-3000:]

    folder = driver_cwd / "logs" / "cl"
    assert not (ROOT / "logs" / "cl").exists(), "a worker wrote relative to its node's folder"
    with (folder / "csv" / "training_results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    events = journal_events(folder)
    planned = {(n["network_id"], n["encoding"]) for e in events if e["event"] == "step_planned" for n in e["networks"]}
    assert len(planned) == 4 and {(int(r["network_id"]), r["encoding"]) for r in rows} == planned, rows
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), rows
    finished = [e["network_id"] for e in events if e["event"] == "network_finished"]
    assert sorted(finished) == sorted(i for i, _ in planned), "each network trained and journaled once"
    # Written by the workers into the driver's folder (one machine here, so one disk: see README on shared disks).
    assert all((folder / "sampled_models" / r["network_id"] / "history.csv").exists() for r in rows)
    assert (folder / "best_model" / "model.keras").exists()
    assert sorted(int(name.split("-")[0]) for name in nodes) == [1, 2, 3, 4], f"one attempt per network: {nodes}"
    assert set(nodes.values()) == {"head", "node2"}, f"tasks ran on both nodes: {nodes}"
