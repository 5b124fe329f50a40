"""Run AIHWKit work in a fresh Python process: `python -m popnas_seg.analog.worker JOB_DIR`.

Why a separate interpreter (not a thread, not a fork): the search process holds TensorFlow and the
trained Keras models; analog simulation is memory-hungry and AIHWKit keeps process-global state, so each
probe / drift job starts clean, its memory is returned when it exits, a crash in compiled code cannot
take the search down, and a hang ends at a timeout. A plain `subprocess` (not multiprocessing spawn) so
the worker never re-imports the caller's main module.

Protocol: the parent writes `JOB_DIR/job.json` ({"task": ..., "params": {...}}) and `JOB_DIR/arrays.npz`;
the worker writes `JOB_DIR/result.json` ({"ok": true, "result": {...}} or {"ok": false, "error": ...,
"traceback": ...}) atomically and exits. `run_job` starts the worker with KERAS_BACKEND=torch so that, should
anything import Keras there, TensorFlow is never loaded. Nothing here touches the environment of the process
that imports this module: a backend set in `os.environ` at import time would leak into every later subprocess
(a search started from it would then build torch-backend Keras models that tf2onnx cannot export).
"""
from __future__ import annotations

import os

import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from popnas_seg.atomic import atomic_write_json

_ROOT = Path(__file__).resolve().parents[2]
_PARENT_ENV = "POPNAS_WORKER_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """A worker must not outlive the search (kill -9, OOM killer): ask Linux for SIGKILL when the parent dies.

    Set from inside the worker rather than with a `preexec_fn` (unsafe in the threaded TensorFlow parent);
    the pid check closes the window in which the parent died before the request was made.
    """
    parent = os.environ.get(_PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the parent's own clean-up (kill on exit) still applies
        return
    if os.getppid() != int(parent):
        os._exit(1)


class AnalogWorkerError(RuntimeError):
    """The analog worker failed, crashed or timed out; the message says which and why."""


def run_job(task: str, params: dict[str, Any], arrays: dict[str, np.ndarray] | None = None,
            timeout_s: float | None = 1800.0) -> dict[str, Any]:
    """Run `task` in a fresh worker process and return its result dict; raise AnalogWorkerError on failure."""
    job_dir = Path(tempfile.mkdtemp(prefix=f"popnas_analog_{task}_"))
    try:
        atomic_write_json(job_dir / "job.json", {"task": task, "params": params})
        np.savez(job_dir / "arrays.npz", **(arrays or {}))
        env = dict(os.environ)
        env["KERAS_BACKEND"] = "torch"
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        env[_PARENT_ENV] = str(os.getpid())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        started = time.perf_counter()
        with open(job_dir / "stdout.txt", "wb") as out, open(job_dir / "stderr.txt", "wb") as err:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "popnas_seg.analog.worker", str(job_dir)],
                    stdout=out, stderr=err, env=env, timeout=timeout_s, check=False,
                )
            except subprocess.TimeoutExpired:
                raise AnalogWorkerError(
                    f"analog worker ({task}) timed out after {timeout_s:.0f} s and was killed"
                ) from None
        result_file = job_dir / "result.json"
        reply = json.loads(result_file.read_text()) if result_file.exists() else None
        if reply is not None and reply.get("ok"):
            result = dict(reply["result"])
            result.setdefault("worker_time_s", time.perf_counter() - started)
            return result
        if reply is not None:
            raise AnalogWorkerError(f"analog worker ({task}) failed: {reply.get('error')}")
        tail = (job_dir / "stderr.txt").read_text(errors="replace").strip().splitlines()[-8:]
        raise AnalogWorkerError(
            f"analog worker ({task}) exited with code {proc.returncode} without a result"
            + (": " + " | ".join(tail) if tail else "")
        )
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _task(name: str) -> Callable[..., dict[str, Any]]:
    """The in-process function of a task (imported here so the parent never loads torch for it)."""
    if name == "probe":
        from popnas_seg.analog.probe import probe_in_process

        return probe_in_process
    if name == "hwa_and_drift":
        from popnas_seg.analog.drift import hwa_and_drift_in_process

        return hwa_and_drift_in_process
    if name == "score_checkpoint":
        from popnas_seg.analog.drift import score_checkpoint_in_process

        return score_checkpoint_in_process
    if name == "analog_samples":
        from popnas_seg.analog.drift import analog_samples_in_process

        return analog_samples_in_process
    if name == "analog_predict":
        from popnas_seg.inference.analog import analog_predict_in_process

        return analog_predict_in_process
    raise ValueError(f"unknown analog worker task {name!r}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m popnas_seg.analog.worker JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(argv[0])
    _die_with_parent()
    try:
        job = json.loads((job_dir / "job.json").read_text())
        with np.load(job_dir / "arrays.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        fn = _task(job["task"])
        result = fn(**job["params"], **arrays)
        atomic_write_json(job_dir / "result.json", {"ok": True, "result": result})
        return 0
    except Exception as exc:  # reported to the parent, which raises AnalogWorkerError with it
        atomic_write_json(job_dir / "result.json", {
            "ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
        })
        return 1


if __name__ == "__main__":
    sys.exit(main())
