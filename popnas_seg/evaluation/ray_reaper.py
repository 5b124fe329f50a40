"""A watchdog that kills a local Ray instance's processes when its driver dies, even by kill -9.

Why: Ray ties the raylet and the GCS to the driver (PR_SET_PDEATHSIG), so they die with it, but the raylet's
agents (ray::DashboardAgent, ray::RuntimeEnvAgent) then spend 60 s trying to report the raylet's death to the
dead GCS (measured 63 s after a kill -9 of the driver, Ray 2.60), and a worker in the middle of a task takes
seconds. The watchdog is a child of the driver in a session of its own (a Ctrl-C to the terminal's group
does not reach it). It follows the process tree below the Ray processes the driver started (polling /proc),
and when its stdin reaches EOF (the driver holds the only write end, so EOF comes however the driver ends) it
SIGKILLs every process of that tree that is still alive, checking start times so a reused pid is never hit.

Linux only (/proc); elsewhere `start` returns None and Ray's own clean-up is all there is.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["children", "kill_tree", "start", "stop"]

POLL_S = 0.5  # how often the tree is refreshed; a worker started in the last POLL_S exits on its own (~5 s)


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time in clock ticks) of every process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces or parentheses
        table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def children(pid: int) -> dict[int, str]:
    """pid -> start time of the direct children of `pid` ({} where /proc is unavailable)."""
    if not Path("/proc/self/stat").exists():
        return {}
    return {child: started for child, (ppid, started) in _process_table().items() if ppid == pid}


def start(roots: dict[int, str]) -> subprocess.Popen | None:
    """Watch `roots` (pid -> start time, from `children`) and everything below them; None without /proc."""
    if not roots or not Path("/proc/self/stat").exists():
        return None
    # Run as a plain script: stdlib only, no package import (TF, Keras) in the watchdog.
    args = [sys.executable, os.path.abspath(__file__), *(f"{p}:{t}" for p, t in roots.items())]
    return subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop(reaper: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """The driver's normal exit: close the pipe (the watchdog kills what Ray's shutdown left) and wait."""
    if reaper is None:
        return
    if reaper.stdin is not None:
        reaper.stdin.close()
    try:
        reaper.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait()


def kill_tree(roots: dict[int, str]) -> None:
    """SIGKILL `roots` (pid -> start time, from `children`) and every process below them, now."""
    if roots and Path("/proc/self/stat").exists():
        _kill(roots)


def _refresh(tracked: dict[int, str]) -> dict[int, str]:
    """The tracked processes still alive (same start time) plus every process now below one of them."""
    table = _process_table()
    alive = {pid: started for pid, started in tracked.items() if pid in table and table[pid][1] == started}
    grew = True
    while grew:
        new = {pid: started for pid, (ppid, started) in table.items() if ppid in alive and pid not in alive}
        alive.update(new)
        grew = bool(new)
    return alive


def _kill(tracked: dict[int, str]) -> None:
    for pid in _refresh(tracked):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # gone in the meantime
            pass


def main(argv: list[str]) -> None:
    tracked = {int(pid): started for pid, started in (arg.split(":", 1) for arg in argv)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the pipe ends the watch
    fd = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready and not os.read(fd, 4096):
            break  # EOF: the driver closed the pipe or died
        tracked = _refresh(tracked)
    _kill(tracked)


if __name__ == "__main__":
    main(sys.argv[1:])
