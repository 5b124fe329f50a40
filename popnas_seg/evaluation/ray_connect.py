"""Can this run join the Ray cluster at `others.ray_address`? Answered within a bound, before the run folder exists.

Without it an unreachable address (e.g. `127.0.0.1:1`) created the run folder, then Ray retried "Failed to get
cluster ID from GCS" for over 200 s with no error line, and a SIGTERM took 17-41 s. Two steps:
1. for "host:port", a TCP connect (`timeout_s`): nothing listening is refused at once;
2. a throw-away `ray.init(address=...)` in a child process, killed when it has not answered `timeout_s`
   seconds after importing Ray. The CLI waits on it in Python, so a SIGTERM or Ctrl-C ends the wait at once
   (the child is killed on the way out).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time

from popnas_seg.errors import UserError

IMPORT_ALLOWANCE_S = 120.0  # importing Ray in the child (seconds on a loaded machine); not part of the bound

_PROBE = """
import os, sys
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
import logging
import ray
print("imported", flush=True)
try:
    ray.init(address=sys.argv[1], logging_level=logging.ERROR, configure_logging=False, log_to_driver=False)
    cpus = ray.cluster_resources().get("CPU", 0)
    ray.shutdown()
except Exception as exc:
    print("error " + (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0][:300], flush=True)
    sys.exit(1)
print(f"ok {cpus:g}", flush=True)
"""


def check_cluster(address: str, timeout_s: float) -> float:
    """The CPUs of the cluster at `address` ("auto" or "host:port"); a `UserError` when it cannot be joined
    within `timeout_s` seconds of connecting."""
    where = f"cannot join the Ray cluster at others.ray_address = {address!r}"
    if address != "auto":
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                pass
        except TimeoutError:
            raise UserError(f"{where}: no answer within {timeout_s:g} s (others.ray_connect_timeout_s)") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UserError(f"{where}: {reason} (is `ray start --head` running there, and the port open?)") from None
    env = dict(os.environ, RAY_DISABLE_FAILURE_SIGNAL_HANDLER="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROBE, address],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buffer = b""
        first = _read_line(fd, buffer, time.monotonic() + IMPORT_ALLOWANCE_S)
        if first is None or first[0] != "imported":
            raise UserError(f"{where}: Ray could not be imported in a child process ({_shown(first)})")
        second = _read_line(fd, first[1], time.monotonic() + timeout_s)
        if second is None:
            raise UserError(f"{where}: no answer within {timeout_s:g} s (others.ray_connect_timeout_s)")
        line = second[0]
        if line.startswith("ok "):
            return float(line[3:])
        raise UserError(f"{where}: {line.removeprefix('error ') or 'the probe ended without an answer'}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _read_line(fd: int, buffer: bytes, deadline: float) -> tuple[str, bytes] | None:
    """The next line from `fd` and the bytes after it; None at the deadline; ("", b"") at EOF."""
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return ("", b"") if not buffer else (buffer.decode(errors="replace").strip(), b"")
        buffer += chunk
    line, rest = buffer.split(b"\n", 1)
    return line.decode(errors="replace").strip(), rest


def _shown(line: tuple[str, bytes] | None) -> str:
    if line is None:
        return f"no answer within {IMPORT_ALLOWANCE_S:g} s"
    return line[0] or "it ended at once"
