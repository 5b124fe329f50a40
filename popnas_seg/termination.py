"""SIGTERM as an orderly stop (like Ctrl-C) that cannot be lost.

A Python signal handler raises its exception in whatever Python code the main thread runs next. When
that is a finaliser (a weakref callback or ``__del__`` run by the garbage collector) Python prints
"Exception ignored in ..." and carries on (reproduced mid-training); on CI the exception also vanished once
without a message. The SIGTERM of a Slurm job or a ``docker stop`` was then lost and the run trained on
until SIGKILL. So the guard keeps re-sending the signal to the main thread every second until the CLI
acknowledges it.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

REDELIVERY_S = 1.0  # how soon a swallowed SIGTERM is raised again


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into the same orderly stop as Ctrl-C: lock released, resume hint printed and logged."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class SigtermGuard:
    """Installed for one CLI call: SIGTERM -> :class:`Terminated`, redelivered until :meth:`acknowledge`."""

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False
        self._acknowledged = threading.Event()
        self._redelivery: threading.Thread | None = None
        self._unraisablehook: Any = None

    def install(self) -> SigtermGuard:
        """Take over SIGTERM; a no-op where signals cannot be set (not the main thread)."""
        try:
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        except (ValueError, OSError):
            return self
        self._unraisablehook = sys.unraisablehook
        sys.unraisablehook = self._quiet_when_redelivered
        return self

    def acknowledge(self) -> None:
        """The stop reached the CLI: clean-up may run, later SIGTERMs (an impatient supervisor) are ignored."""
        self._acknowledged.set()

    def restore(self) -> None:
        """Give SIGTERM back to the caller's handler and stop any redelivery."""
        self._acknowledged.set()
        if self._redelivery is not None:
            self._redelivery.join()
        if self._installed:
            try:
                signal.signal(signal.SIGTERM, self._previous)
            except (ValueError, OSError):
                pass
            sys.unraisablehook = self._unraisablehook
            self._installed = False

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self._acknowledged.is_set() or isinstance(sys.exc_info()[1], Terminated):
            return  # the stop is already unwinding or being cleaned up: do not break it
        if self._redelivery is None:  # the first SIGTERM: resend until acknowledged
            self._redelivery = threading.Thread(target=self._redeliver, name="sigterm-redelivery", daemon=True)
            self._redelivery.start()
        raise Terminated(signum)

    def _quiet_when_redelivered(self, unraisable: Any) -> None:
        """A finaliser swallowed our Terminated: no "Exception ignored" noise, the redelivery raises it again."""
        if not isinstance(unraisable.exc_value, Terminated):
            self._unraisablehook(unraisable)

    def _redeliver(self) -> None:
        main = threading.main_thread().ident
        while not self._acknowledged.wait(REDELIVERY_S):
            if main is not None:
                signal.pthread_kill(main, signal.SIGTERM)  # a real signal: it also wakes a blocking call


@contextlib.contextmanager
def keep_signal_handlers() -> Iterator[None]:
    """Around `ray.init`: the CLI's SIGTERM / SIGINT handling survives it, and a SIGTERM during it is ours.

    `ray.init` installs Python SIGTERM handlers of its own (`sys.exit(15)`, and after starting a node
    `sys.exit(1)` once its processes are killed) and, unless RAY_DISABLE_FAILURE_SIGNAL_HANDLER is set before
    ray is imported, a C++ failure-signal handler that aborts ("*** SIGTERM received ***", exit 134). Measured
    with workers 2: exit 134 during training, 15 during ray.init, no resume hint. Here the handlers in place
    before are installed again afterwards (at the C level too), and the SystemExit that Ray's handler raises
    inside the block becomes the orderly :class:`Terminated`.
    """
    main = threading.current_thread() is threading.main_thread()
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        yield
    except SystemExit:  # only Ray's SIGTERM handlers call sys.exit inside ray.init
        raise Terminated(signal.SIGTERM) from None
    finally:
        for signum, handler in saved.items():
            if handler is not None:  # None: set outside Python, nothing of ours to restore
                try:
                    signal.signal(signum, handler)
                except (ValueError, OSError):
                    pass
