"""The persistent analog worker (analog/worker.py): reuse, crash and timeout isolation, clean state per job,
death with its parent, and removal of job folders on every exit path.

These use the worker's test-only tasks (`_echo`, `_sleep`, `_exit`, `_segfault`, `_state`), which the worker
accepts only with POPNAS_ANALOG_TEST_TASKS=1 in its environment; no network, no AIHWKit (only `_state`
imports torch), so each test takes about a second or two.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from popnas_seg.analog import worker as w

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def test_tasks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh worker that accepts the test tasks, stopped again afterwards."""
    w.shutdown_worker()
    monkeypatch.setenv("POPNAS_ANALOG_TEST_TASKS", "1")
    yield
    w.shutdown_worker()


def _gone(pid: int, within_s: float = 10.0) -> bool:
    """Whether process `pid` has exited (or is a zombie nobody reaped) within `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(proc.stdout)


def test_jobs_reuse_one_worker_and_arrays_round_trip() -> None:
    first = w.run_job("_echo", {"a": 1}, {"x": np.ones((2, 3), np.float32)}, timeout_s=60)
    second = w.run_job("_echo", {"b": "two"}, timeout_s=60)
    assert first["params"] == {"a": 1} and first["sums"] == {"x": 6.0}
    assert second["params"] == {"b": "two"}
    assert first["pid"] == second["pid"] == w.worker_pid() != os.getpid()
    assert first["worker_time_s"] > 0


def test_a_task_error_keeps_the_worker() -> None:
    pid = w.run_job("_echo", {}, timeout_s=60)["pid"]
    with pytest.raises(w.AnalogWorkerError, match="unknown analog worker task"):
        w.run_job("no_such_task", {}, timeout_s=60)
    assert w.run_job("_echo", {}, timeout_s=60)["pid"] == pid


@pytest.mark.parametrize("task,params,code", [("_exit", {"code": 3}, "3"), ("_segfault", {}, "-11")])
def test_a_crash_kills_the_worker_and_the_next_job_starts_a_fresh_one(task: str, params: dict, code: str) -> None:
    pid = w.run_job("_echo", {}, timeout_s=60)["pid"]
    with pytest.raises(w.AnalogWorkerError, match=f"exited with code {code} without a result"):
        w.run_job(task, params, timeout_s=60)
    assert _gone(pid)
    assert w.run_job("_echo", {}, timeout_s=60)["pid"] not in (pid, None)


def test_a_crash_message_quotes_that_job_s_output_only() -> None:
    w.run_job("_echo", {"say": "output of an earlier job"}, timeout_s=60)
    with pytest.raises(w.AnalogWorkerError) as err:
        w.run_job("_exit", {"code": 1, "say": "the reason it died"}, timeout_s=60)
    assert "the reason it died" in str(err.value) and "earlier job" not in str(err.value)


def test_a_timeout_kills_the_worker() -> None:
    pid = w.run_job("_echo", {}, timeout_s=60)["pid"]
    started = time.monotonic()
    with pytest.raises(w.AnalogWorkerError, match="timed out after 1 s and was killed"):
        w.run_job("_sleep", {"seconds": 60}, timeout_s=1)
    assert time.monotonic() - started < 10
    assert _gone(pid)
    assert w.run_job("_echo", {}, timeout_s=60)["pid"] != pid


def test_a_worker_that_died_while_idle_is_replaced_silently() -> None:
    pid = w.run_job("_echo", {}, timeout_s=60)["pid"]
    os.kill(pid, signal.SIGKILL)
    assert _gone(pid)
    assert w.run_job("_echo", {}, timeout_s=60)["pid"] != pid


def test_worker_env_is_torch_backend_and_nothing_leaks_into_the_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    state = w.run_job("_state", {}, timeout_s=120)
    assert state["keras_backend"] == "torch" and not state["tensorflow_loaded"]
    assert "KERAS_BACKEND" not in os.environ and "POPNAS_WORKER_PARENT_PID" not in os.environ


def test_global_torch_state_is_reset_between_jobs() -> None:
    """A job that reseeds torch and disables autograd must not change what the next job sees.

    (A fresh interpreter seeds torch's generator randomly, so the worker resets it to one fixed seed before
    every job once torch is loaded: a job sees the same state whatever ran before it.)"""
    w.run_job("_state", {}, timeout_s=120)  # loads torch in the worker
    clean = w.run_job("_state", {}, timeout_s=120)
    dirty = w.run_job("_state", {"seed_torch": True}, timeout_s=120)
    after = w.run_job("_state", {}, timeout_s=120)
    assert clean["pid"] == dirty["pid"] == after["pid"]
    for key in ("torch_initial_seed", "grad_enabled", "first_rand"):
        assert clean[key] == dirty[key] == after[key], key
    assert after["grad_enabled"] is True


def test_job_folders_live_under_one_per_process_folder_removed_at_shutdown() -> None:
    w.run_job("_echo", {}, timeout_s=60)
    home = w._STATE.home  # type: ignore[union-attr]
    assert home.name.startswith(f"popnas_analog_{os.getpid()}_") and home.is_dir()
    assert not any(p.name.startswith("job_") for p in home.iterdir())  # each job folder goes with its job
    w.shutdown_worker()
    assert not home.exists()


def test_sweep_removes_folders_of_dead_processes_only(tmp_path: Path) -> None:
    me, start = os.getpid(), w._start_time(os.getpid())
    assert start is not None
    dead = tmp_path / f"popnas_analog_{_dead_pid()}_{start}_abc"
    reused = tmp_path / f"popnas_analog_{me}_{start + 1}_abc"  # a live pid, but not the process that made it
    live = tmp_path / f"popnas_analog_{me}_{start}_abc"
    other = tmp_path / "popnas_analog_probe_xyz"  # the old per-job naming: not ours to judge
    for folder in (dead, reused, live, other):
        (folder / "job_1_probe").mkdir(parents=True)
    removed = w.sweep_stale_folders(tmp_path)
    assert sorted(removed) == sorted([dead, reused])
    assert live.exists() and other.exists() and not dead.exists() and not reused.exists()


def test_first_job_sweeps_the_real_tempdir() -> None:
    start = w._start_time(os.getpid())
    stale = Path(tempfile.gettempdir()) / f"popnas_analog_{_dead_pid()}_{start}_test"
    live = Path(tempfile.gettempdir()) / f"popnas_analog_{os.getpid()}_{start}_test"
    try:
        for folder in (stale, live):
            (folder / "job_1_probe").mkdir(parents=True, exist_ok=True)
        w.run_job("_echo", {}, timeout_s=60)
        assert not stale.exists() and live.exists()
    finally:
        for folder in (stale, live):
            subprocess.run(["rm", "-rf", str(folder)], check=False)


_PARENT = textwrap.dedent("""
    import os, signal, sys, time
    from popnas_seg.analog import worker as w
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    w.run_job("_echo", {}, timeout_s=120)
    print(w.worker_pid(), w._STATE.home, flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)
    if sys.argv[1] == "job":
        w.run_job("_sleep", {"seconds": 600}, timeout_s=None)
    time.sleep(600)
""")


def _parent(mode: str) -> tuple[subprocess.Popen, int, Path]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", _PARENT, mode], stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT)
    )
    assert proc.stdout is not None
    pid, home = proc.stdout.readline().split()
    return proc, int(pid), Path(home)


def test_normal_exit_stops_the_worker_and_removes_the_folder() -> None:
    proc, pid, home = _parent("exit")
    assert proc.wait(30) == 0
    assert _gone(pid) and not home.exists()


def test_sigterm_during_a_job_kills_the_worker_and_removes_the_folder() -> None:
    proc, pid, home = _parent("job")
    time.sleep(0.5)  # the parent is now waiting inside run_job
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143
    assert _gone(pid) and not home.exists()


def test_kill_9_of_the_parent_kills_the_worker_and_the_next_run_sweeps_its_folder() -> None:
    proc, pid, home = _parent("job")
    time.sleep(0.5)
    proc.kill()
    proc.wait(30)
    assert _gone(pid)  # PR_SET_PDEATHSIG
    assert home.exists()
    w.run_job("_echo", {}, timeout_s=60)  # this process's first job sweeps folders of dead processes
    assert not home.exists()


def test_every_task_resolves_by_its_module_path() -> None:
    """The task table names functions by module path (no imports of its callers): each one resolves."""
    from popnas_seg.analog import worker_process

    for name, path in worker_process.TASKS.items():
        fn = worker_process._task(name)
        assert callable(fn) and f"{fn.__module__}:{fn.__name__}" == path, name
