"""Run AIHWKit work in a separate, long-lived Python process: one analog worker per parent process.

Why a separate interpreter (not a thread, not a fork): the search process holds TensorFlow and the
trained Keras models; analog simulation is memory-hungry and AIHWKit keeps process-global state, so a
crash in compiled code must not take the search down and a hang must end at a timeout. A plain
`subprocess` (not multiprocessing spawn) so the worker never re-imports the caller's main module.

Why one persistent worker instead of one process per job: importing torch + AIHWKit costs seconds, about
as much as the probe itself on a small child network. The worker is started lazily by the first
`run_job` of a process (the search driver, or each Ray worker process in the parallel path) and reused by
every later job, so the import is paid once per process. Every guarantee of the one-shot worker stays:

- a job that crashes the worker (segfault, `os._exit`, the OOM killer) or exceeds its timeout kills that
  worker and raises `AnalogWorkerError`; the next job starts a fresh worker. Ctrl-C / SIGTERM while a
  job runs kill the worker too (the worker ignores SIGINT itself: the parent decides);
- the worker dies with its parent, also on kill -9 (PR_SET_PDEATHSIG, `_die_with_parent`). Linux sends
  it when the *thread* that started the worker ends: a worker started from a short-lived thread dies with
  that thread and the next job starts another (a cost, not an error). An idle worker also exits on EOF of
  its request pipe;
- KERAS_BACKEND=torch is set in the worker's environment only, so, should anything import Keras there,
  TensorFlow is never loaded; nothing here touches the environment of the process that imports this
  module (a backend set in `os.environ` at import time would leak into every later subprocess, and a
  search started from it would build torch-backend Keras models that tf2onnx cannot export);
- no state that changes results carries over between jobs: every task seeds torch per job (as before),
  and before each job the worker also resets torch's global generator to one fixed seed (a fresh
  interpreter's is random) and re-enables autograd, so a job sees the same state whatever ran before it;
  networks are converted layer by layer (rpu.py), so AIHWKit's once-per-process
  wrapper class (STACK.md) is never involved. Memory is the one thing a long-lived
  process keeps: the parent retires a worker whose resident memory passes `RECYCLE_RSS_BYTES`.

Protocol, and why this one: per job the parent writes `JOB_DIR/job.json` ({"task": ..., "params": {...}})
and `JOB_DIR/arrays.npz` (numpy arrays travel as files: whole images are too large for a message), then
writes the job folder's path as one line on the worker's stdin. The worker runs the task, writes
`JOB_DIR/result.json` ({"ok": true, "result": {...}} or {"ok": false, "error": ..., "traceback": ...})
atomically, and answers with the job folder's name as one line on a private reply pipe (an inherited file
descriptor, not stdout: torch, AIHWKit or a task may print to stdout at any time, so the worker's
stdout and stderr go to a log file whose tail is quoted when the worker dies). A line protocol over two
pipes needs no serialisation beyond JSON files and lets the parent `select()` on the reply with a
deadline, which is how the timeout is enforced; a closed reply pipe means the worker died.

Temporary folders: every job folder lives under one folder per parent process,
`<tempdir>/popnas_analog_<pid>_<start time>_*/`, removed when the parent exits (atexit). Parents that
exit without running atexit (kill -9, a SIGTERM nobody handles) leave theirs behind, so the first
`run_job` of every process removes such folders whose process is gone (`sweep_stale_folders`); the start
time in the name tells a live process from an unrelated one that reused a dead parent's pid.

This module is the parent half; the worker's own half (the `--serve` loop, the job runner, the TASKS table
naming each job's function) is worker_process.py.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.analog.worker_process import ACK, PARENT_ENV
from popnas_seg.atomic import atomic_write_json

__all__ = ["AnalogWorkerError", "RECYCLE_RSS_BYTES", "run_job", "shutdown_worker", "sweep_stale_folders", "worker_pid"]

_ROOT = Path(__file__).resolve().parents[2]
_FOLDER_PREFIX = "popnas_analog_"
_FOLDER_RE = re.compile(rf"^{_FOLDER_PREFIX}(\d+)_(\d+)_")
RECYCLE_RSS_BYTES = 6 * 1024**3
"""A worker whose resident memory exceeds this after a job is stopped; the next job starts a fresh one."""
_STOP_GRACE_S = 5.0


class AnalogWorkerError(RuntimeError):
    """The analog worker failed, crashed or timed out; the message says which and why."""


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def _process_alive(pid: int, start: int) -> bool:
    """Whether process `pid` exists and (where /proc tells) is the one that started at `start`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except OSError:
        return True
    now = _start_time(pid)
    return now is None or start == 0 or now == start


def sweep_stale_folders(tempdir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the per-process job folders of processes that no longer exist; returns what was removed."""
    base = Path(tempdir or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _FOLDER_RE.match(entry.name)
        if not match or not entry.is_dir() or entry.is_symlink():
            continue
        if _process_alive(int(match.group(1)), int(match.group(2))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    return removed


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "torch"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    # OpenMP threads that spin while waiting lose their time slices to whatever else runs (the search's
    # TF threads, other Ray workers): measured on 2 busy cores, an analog probe pass took 5-7 s spinning,
    # 2-3 s waiting passively. Only where the user has not chosen a policy.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env[PARENT_ENV] = str(os.getpid())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _Worker:
    """One `--serve` worker process: its request pipe (stdin), reply pipe and log file."""

    def __init__(self, home: Path, index: int) -> None:
        self.log_path = home / f"worker_{index}.log"
        read_fd, write_fd = os.pipe()
        try:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "popnas_seg.analog.worker_process", "--serve", str(write_fd)],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=log,
                    env=_worker_env(),
                    pass_fds=(write_fd,),
                )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._reply_fd: int | None = read_fd
        self._buffer = b""
        self.jobs = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, job_dir: Path) -> bool:
        """Hand the worker a job; False if it is already gone (the job never started)."""
        if not self.alive():
            return False
        if self.jobs:  # a reused worker: its log keeps only this job's output (a fresh one keeps its start-up)
            self.truncate_log()
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(f"{job_dir}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def read_reply(self, deadline: float | None) -> str | None:
        """The next reply line; None when the worker closed the pipe (it died). TimeoutError at `deadline`."""
        assert self._reply_fd is not None
        while b"\n" not in self._buffer:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError
            # Wake up every second to check the process too: a grandchild that inherited the pipe's write
            # end (a fork inside a task) would otherwise hide the worker's death until it exits as well.
            ready, _, _ = select.select([self._reply_fd], [], [], 1.0 if left is None else min(left, 1.0))
            if not ready:
                if not self.alive():
                    return None
                continue
            chunk = os.read(self._reply_fd, 4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def log_tail(self, lines: int = 8) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return []

    def truncate_log(self) -> None:
        """Keep only the current job's output (the worker appends, so truncating is safe while it runs)."""
        try:
            os.truncate(self.log_path, 0)
        except OSError:
            pass

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self._reap(None)

    def stop(self) -> None:
        """EOF on its requests ends the worker's loop; kill it if it does not exit within the grace time."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reap(None)

    def _reap(self, timeout: float | None) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin,):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if self._reply_fd is not None:
            os.close(self._reply_fd)
            self._reply_fd = None
        try:
            self.log_path.unlink()
        except OSError:
            pass


class _ParentState:
    """This process's job folder and worker; rebuilt after a fork (the pid check in `_state`)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        sweep_stale_folders()
        start = _start_time(self.pid) or 0
        self.home = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{self.pid}_{start}_"))
        self.worker: _Worker | None = None
        self.workers_started = 0
        self.jobs = 0

    def new_worker(self) -> _Worker:
        self.workers_started += 1
        self.worker = _Worker(self.home, self.workers_started)
        return self.worker

    def retire(self, kill: bool) -> None:
        if self.worker is not None:
            worker, self.worker = self.worker, None
            worker.kill() if kill else worker.stop()

    def close(self) -> None:
        self.retire(kill=False)
        shutil.rmtree(self.home, ignore_errors=True)


_LOCK = threading.RLock()
_STATE: _ParentState | None = None


def _state() -> _ParentState:
    global _STATE
    if _STATE is None or _STATE.pid != os.getpid():  # first job, or a forked child: its own folder and worker
        _STATE = _ParentState()
    return _STATE


def shutdown_worker() -> None:
    """Stop this process's worker and remove its job folder (atexit does this; tests call it directly)."""
    global _STATE
    # Bounded wait: at interpreter exit a daemon thread may still hold the lock inside a job.
    locked = _LOCK.acquire(timeout=2 * _STOP_GRACE_S)
    try:
        if _STATE is not None and _STATE.pid == os.getpid():
            _STATE.close()
        _STATE = None
    finally:
        if locked:
            _LOCK.release()


atexit.register(shutdown_worker)


def worker_pid() -> int | None:
    """The pid of this process's live worker, if any (for tests and diagnostics)."""
    with _LOCK:
        if _STATE is None or _STATE.pid != os.getpid() or _STATE.worker is None or not _STATE.worker.alive():
            return None
        return _STATE.worker.proc.pid


def run_job(
    task: str, params: dict[str, Any], arrays: dict[str, np.ndarray] | None = None, timeout_s: float | None = 1800.0
) -> dict[str, Any]:
    """Run `task` in this process's analog worker and return its result dict; raise AnalogWorkerError on failure.

    `timeout_s` bounds the whole call, including the start of a fresh worker when there is none.
    """
    with _LOCK:
        state = _state()
        started = time.perf_counter()
        deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
        state.jobs += 1
        job_dir = state.home / f"job_{state.jobs}_{task}"
        job_dir.mkdir()
        try:
            atomic_write_json(job_dir / "job.json", {"task": task, "params": params})
            np.savez(job_dir / "arrays.npz", allow_pickle=True, **(arrays or {}))
            return _run_in_worker(state, task, job_dir, deadline, timeout_s, started)
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)


def _run_in_worker(
    state: _ParentState, task: str, job_dir: Path, deadline: float | None, timeout_s: float | None, started: float
) -> dict[str, Any]:
    worker = state.worker
    reused = worker is not None and worker.alive() and worker.send(job_dir)
    if not reused:
        state.retire(kill=True)  # gone while idle (never an error: the job has not started)
        worker = _start_and_send(state, task, job_dir)
    assert worker is not None
    try:
        ack = worker.read_reply(deadline)
        if ack is None and reused:
            # It died before taking the job: killed while idle, and poll() had not seen it yet (a SIGKILLed
            # multi-threaded process is reaped only once all its threads are gone). Not the job's fault.
            state.retire(kill=True)
            worker = _start_and_send(state, task, job_dir)
            ack = worker.read_reply(deadline)
        reply = worker.read_reply(deadline) if ack == f"{ACK}{job_dir.name}" else ack  # None: died in the job
        worker.jobs += 1
    except TimeoutError:
        state.retire(kill=True)
        raise AnalogWorkerError(f"analog worker ({task}) timed out after {timeout_s:.0f} s and was killed") from None
    except BaseException:  # Ctrl-C, SIGTERM (cli.Terminated): the job is abandoned, so is its worker
        state.retire(kill=True)
        raise
    if reply is None:  # the pipe closed: the worker died during the job
        tail = worker.log_tail()
        try:
            code = worker.proc.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            code = None
        state.retire(kill=True)
        raise AnalogWorkerError(f"analog worker ({task}) exited with code {code} without a result" + _tail(tail))
    if reply != job_dir.name:
        state.retire(kill=True)
        raise AnalogWorkerError(f"analog worker ({task}) answered {reply[:200]!r} for job {job_dir.name}")
    result_file = job_dir / "result.json"
    out = json.loads(result_file.read_text()) if result_file.exists() else None
    rss = _rss_bytes(worker.proc.pid)
    if rss is not None and rss > RECYCLE_RSS_BYTES:
        state.retire(kill=False)
    if out is not None and out.get("ok"):
        result = dict(out["result"])
        result.setdefault("worker_time_s", time.perf_counter() - started)
        return result
    if out is not None:
        raise AnalogWorkerError(f"analog worker ({task}) failed: {out.get('error')}")
    raise AnalogWorkerError(f"analog worker ({task}) answered without writing result.json")


def _start_and_send(state: _ParentState, task: str, job_dir: Path) -> _Worker:
    """A fresh worker with the job handed to it; AnalogWorkerError if it cannot even take the job."""
    worker = state.new_worker()
    if not worker.send(job_dir):
        tail = worker.log_tail()
        state.retire(kill=True)
        raise AnalogWorkerError(f"analog worker ({task}) could not be started" + _tail(tail))
    return worker


def _tail(lines: list[str]) -> str:
    return (": " + " | ".join(lines)) if lines else ""
