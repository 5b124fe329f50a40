"""The analog worker process itself: the `--serve` loop, one job per request line, and the task table.

The parent half (starting, reusing, timing out and retiring this process) is worker.py, whose docstring
gives the why and the protocol; this module is what runs on the other end of the pipes, started as
`python -m popnas_seg.analog.worker_process --serve REPLY_FD`. `python -m popnas_seg.analog.worker_process
JOB_DIR` runs one job folder and exits (handy to re-run a job by hand).

Test-only tasks (`_echo`, `_sleep`, `_exit`, `_segfault`, `_state`) exist for the worker's own tests;
the worker accepts them only when POPNAS_ANALOG_TEST_TASKS=1 is in its environment.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.atomic import atomic_write_json

PARENT_ENV = "POPNAS_WORKER_PARENT_PID"
"""The parent's pid, set in the worker's environment: the worker dies with that process."""
_TEST_TASKS_ENV = "POPNAS_ANALOG_TEST_TASKS"
_PR_SET_PDEATHSIG = 1
# Reset before every job once torch is loaded (c10's default_rng_seed_val; any fixed value would do).
_TORCH_JOB_SEED = 67280421310721
ACK = "+"  # the worker's first reply line to a job: "+<job folder name>" = taken (then the name = done)


def _die_with_parent() -> None:
    """A worker must not outlive the search (kill -9, OOM killer): ask Linux for SIGKILL when the parent dies.

    Set from inside the worker rather than with a `preexec_fn` (unsafe in the threaded TensorFlow parent);
    the pid check closes the window in which the parent died before the request was made.
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the parent's own clean-up (kill on exit) still applies
        return
    if os.getppid() != int(parent):
        os._exit(1)


def _test_task(name: str) -> Callable[..., dict[str, Any]] | None:
    """Tasks that exercise the worker itself (crash, hang, state); only with POPNAS_ANALOG_TEST_TASKS=1."""
    if os.environ.get(_TEST_TASKS_ENV) != "1":
        return None

    def echo(say: str = "", **kw: Any) -> dict[str, Any]:
        if say:
            print(say, file=sys.stderr, flush=True)
        return {
            "pid": os.getpid(),
            "params": {k: v for k, v in kw.items() if not isinstance(v, np.ndarray)},
            "sums": {k: float(np.sum(v)) for k, v in kw.items() if isinstance(v, np.ndarray)},
        }

    def sleep(seconds: float) -> dict[str, Any]:
        time.sleep(seconds)
        return {"slept": seconds}

    def exit_(code: int, say: str = "") -> dict[str, Any]:
        if say:
            print(say, file=sys.stderr, flush=True)
        os._exit(code)

    def segfault() -> dict[str, Any]:
        import ctypes

        ctypes.string_at(0)
        return {}

    def state(seed_torch: bool = False) -> dict[str, Any]:
        """What a job sees of process-global state; with seed_torch, leave the generator moved on."""
        import torch

        out = {
            "pid": os.getpid(),
            "keras_backend": os.environ.get("KERAS_BACKEND"),
            "tensorflow_loaded": "tensorflow" in sys.modules,
            "torch_initial_seed": torch.initial_seed(),
            "grad_enabled": torch.is_grad_enabled(),
            "first_rand": float(torch.rand(1)),
        }
        if seed_torch:
            torch.manual_seed(123)
            torch.set_grad_enabled(False)
        return out

    tasks: dict[str, Callable[..., dict[str, Any]]] = {
        "_echo": echo,
        "_sleep": sleep,
        "_exit": exit_,
        "_segfault": segfault,
        "_state": state,
    }
    return tasks.get(name)


# task name -> "module:function" run in the worker. Module paths, not imports: the parent never loads torch
# for a task, and this module (a floor under analog/, devices.py and inference/) imports none of its callers.
TASKS: dict[str, str] = {
    "probe": "popnas_seg.analog.scoring:probe_in_process",
    "hwa_and_drift": "popnas_seg.analog.hwa:hwa_and_drift_in_process",
    "score_checkpoint": "popnas_seg.analog.checkpoints:score_checkpoint_in_process",
    "analog_samples": "popnas_seg.analog.checkpoints:analog_samples_in_process",
    "devices": "popnas_seg.devices:devices_in_process",
    "analog_predict": "popnas_seg.inference.analog:analog_predict_in_process",
}


def _task(name: str) -> Callable[..., dict[str, Any]]:
    """The in-process function of a task, imported by its module path (in the worker only)."""
    if name in TASKS:
        module, function = TASKS[name].split(":")
        fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), function)
        return fn
    test = _test_task(name)
    if test is not None:
        return test
    raise ValueError(f"unknown analog worker task {name!r}")


def _fresh_globals() -> None:
    """Before each job: one fixed torch state, whatever earlier jobs did to it (tasks seed per job on top)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(_TORCH_JOB_SEED)
        torch.set_grad_enabled(True)


def _run_one(job_dir: Path) -> int:
    """Run the job in `job_dir`, write result.json; 0 on success, 1 when the task raised."""
    try:
        _fresh_globals()
        job = json.loads((job_dir / "job.json").read_text())
        with np.load(job_dir / "arrays.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        fn = _task(job["task"])
        result = fn(**job["params"], **arrays)
        atomic_write_json(job_dir / "result.json", {"ok": True, "result": result})
        return 0
    except Exception as exc:  # reported to the parent, which raises AnalogWorkerError with it
        atomic_write_json(
            job_dir / "result.json",
            {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            },
        )
        return 1


def serve(reply_fd: int) -> int:
    """The persistent loop: a job folder per stdin line, its name back on `reply_fd`; EOF ends it."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    os.set_inheritable(reply_fd, False)  # no subprocess of a task keeps the reply pipe open
    with os.fdopen(reply_fd, "w", buffering=1) as reply:
        while True:
            line = sys.stdin.readline()
            if not line:
                return 0
            job_dir = Path(line.rstrip("\n"))
            if not line.strip():
                continue
            reply.write(f"{ACK}{job_dir.name}\n")  # the job has started: a death from here on is its failure
            reply.flush()
            _run_one(job_dir)
            gc.collect()
            reply.write(job_dir.name + "\n")
            reply.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--serve":
        return serve(int(argv[1]))
    if len(argv) != 1:
        print("usage: python -m popnas_seg.analog.worker_process JOB_DIR | --serve REPLY_FD", file=sys.stderr)
        return 2
    _die_with_parent()
    return _run_one(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
