"""Reliability, second pass (issue 37): SIGTERM under Ray, cluster addresses, resource bombs, unwritable
outputs, data and orders that cannot work. Each test names the hole it closes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from popnas_seg import cli
from search_helpers import ROOT, journal_events, start_cli, tiny_config, wait_for


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _end(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


# ------------------------------------------------------------------------------ SIGTERM with Ray workers


def test_sigterm_with_two_ray_workers_mid_training_exits_143_with_the_hint(tmp_path: Path) -> None:
    """ray.init replaced the CLI's SIGTERM handler by Ray's C++ one: abort, exit 134, no resume hint."""
    pytest.importorskip("ray")
    from popnas_seg.evaluation.parallel import TASK_PID_DIR_ENV

    cfg = tiny_config(tmp_path, probe=False, pipeline=["search"], strategy="random", search_strategy__max_networks=2,
                      search_strategy__b1_max_networks=2, others__workers=2,
                      training_hyperparameters__epochs=200, training_hyperparameters__steps_per_epoch=1)
    logs, pids = tmp_path / "logs", tmp_path / "pids"
    folder, log = logs / "w2", tmp_path / "out.txt"
    os.environ[TASK_PID_DIR_ENV] = str(pids)  # the Ray workers inherit it and announce their tasks
    try:
        proc = start_cli(["-j", str(cfg), "--logs-dir", str(logs), "--name", "w2"], log)
    finally:
        del os.environ[TASK_PID_DIR_ENV]
    try:
        deadline = time.monotonic() + 300
        while not (pids.is_dir() and any(pids.iterdir())):  # a worker is training a network
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = _end(proc, timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert code == cli.EXIT_TERMINATED == 143, output[-3000:]
    assert f"terminated (SIGTERM); resume with: python run.py -r {folder}" in output
    assert "SIGTERM received" not in output and "Traceback" not in output, output[-3000:]
    assert f"resume with: python run.py -r {folder}" in (folder / "run.log").read_text()
    assert (folder / "restore" / "lock").read_text() == ""
    assert not [e for e in journal_events(folder) if e["event"] == "network_finished"], "stopped mid-training"
    print(f"SIGTERM to exit with two Ray workers: {took:.1f} s")


def test_signal_handlers_survive_a_library_that_replaces_them() -> None:
    """What ray.init does: set its own SIGTERM handler (sys.exit(15)); a SIGTERM inside it becomes Terminated,
    and the handlers in place before are back afterwards."""
    from popnas_seg.termination import SigtermGuard, Terminated, keep_signal_handlers

    def like_ray_init(signum: int, frame: Any) -> None:
        sys.exit(signum)

    guard = SigtermGuard().install()
    try:
        ours = signal.getsignal(signal.SIGTERM)
        with keep_signal_handlers():
            signal.signal(signal.SIGTERM, like_ray_init)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is ours
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(Terminated):
            with keep_signal_handlers():
                signal.signal(signal.SIGTERM, like_ray_init)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        guard.restore()


def test_more_workers_than_cores_is_warned_about() -> None:
    from popnas_seg.evaluation.parallel import oversubscription_warning

    assert oversubscription_warning(2, 2) is None and oversubscription_warning("auto", 1) is None
    warning = oversubscription_warning(1000, 2)
    assert warning is not None and "1000" in warning and "2 CPU core(s)" in warning
