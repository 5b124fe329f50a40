"""The watchdog that kills a local Ray instance's process tree when the driver dies (evaluation/ray_reaper.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from popnas_seg.evaluation import ray_reaper

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the watchdog reads /proc (Linux)")

# A stand-in driver: one child it started (like the raylet) with a grandchild (like an agent) started later,
# one child it did not hand to the watchdog (like the analog worker), then the watchdog; prints the pids.
DRIVER = """
import os, subprocess, sys, time
from popnas_seg.evaluation import ray_reaper
own = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
before = ray_reaper.children(os.getpid())
raylet = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; time.sleep(0.3); "
    "a = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); print(a.pid, flush=True); "
    "time.sleep(300)"], stdout=subprocess.PIPE, text=True)
started = {p: t for p, t in ray_reaper.children(os.getpid()).items() if before.get(p) != t}
reaper = ray_reaper.start(started)
agent = int(raylet.stdout.readline())
time.sleep(1.5 * ray_reaper.POLL_S + 0.5)  # the watchdog has seen the agent
print(own.pid, raylet.pid, agent, reaper.pid, flush=True)
if sys.argv[1] == "close":
    ray_reaper.stop(reaper)
    print("stopped", flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _driver(mode: str) -> tuple[subprocess.Popen, list[int]]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, mode], stdout=subprocess.PIPE, text=True, env=env)
    return proc, [int(p) for p in proc.stdout.readline().split()]


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def test_kill_9_of_the_driver_kills_the_watched_tree_and_spares_the_rest() -> None:
    proc, (own, raylet, agent, reaper) = _driver("kill")
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert _wait_gone([raylet, agent, reaper], 5) == [], "watched tree (and the watchdog) gone within 5 s"
        assert _alive(own), "a child the watchdog was not given (the analog worker) is left to its own clean-up"
    finally:
        for pid in (own, raylet, agent):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_normal_stop_reaps_stragglers_and_the_driver_goes_on() -> None:
    proc, (own, raylet, agent, reaper) = _driver("close")
    try:
        assert proc.stdout.readline().strip() == "stopped"
        assert _wait_gone([raylet, agent, reaper], 5) == []
        assert proc.poll() is None and _alive(own)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if _alive(own):
            os.kill(own, signal.SIGKILL)


def test_a_reused_pid_is_not_killed() -> None:
    """The start time goes with each pid: a process that took a dead one's pid is not the one watched."""
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        started = ray_reaper.children(os.getpid())[victim.pid]
        assert ray_reaper._refresh({victim.pid: started}) == {victim.pid: started}
        assert ray_reaper._refresh({victim.pid: str(int(started) - 1)}) == {}
    finally:
        victim.kill()
        victim.wait()
