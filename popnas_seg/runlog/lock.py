"""restore/lock: the exclusive flock that keeps two processes from writing one run folder.

The kernel drops a flock when its process dies, so a lock left by a killed run is taken over without any
manual clean-up; the holder's pid in the file names the holder in the error, and is the whole lock on a file
system without flock. Kept apart from runlog/folder.py, which decides what the folder holds, not who holds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from popnas_seg.command import tool_command
from popnas_seg.errors import UserError

try:  # POSIX only; elsewhere the pid check below is the whole lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class FolderLock:
    """restore/lock: an exclusive flock plus the holder's pid (for the error message and the fallback).

    Re-entrant within one process (a second RunFolder on the same folder shares the lock), because
    flock locks belong to open file descriptions and would otherwise make a process block itself.
    """

    _held_here: ClassVar[dict[str, FolderLock]] = {}

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._users = 1

    @property
    def held(self) -> bool:
        return self._fd is not None

    @classmethod
    def acquire(cls, path: Path, shown: Path) -> FolderLock:
        key = _key(path)
        mine = cls._held_here.get(key)
        if mine is not None and mine.held:
            mine._users += 1
            return mine
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise UserError(f'cannot lock run folder "{shown}": {exc.strerror or exc}') from None
        try:
            locked_by_kernel = False
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked_by_kernel = True
                except BlockingIOError:
                    raise UserError(_busy_message(shown, _read_pid(fd))) from None
                except OSError:  # file system without flock (some network mounts): pid check only
                    locked_by_kernel = False
            if not locked_by_kernel:
                holder = _read_pid(fd)
                if holder and holder != os.getpid() and _alive(holder):
                    raise UserError(_busy_message(shown, holder))
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        lock = cls(path, fd)
        cls._held_here[key] = lock
        return lock

    def moved_to(self, path: Path) -> None:
        """The folder was renamed (creation): the fd still locks the same file, only the key changes."""
        self._held_here.pop(_key(self.path), None)
        self.path = path
        self._held_here[_key(path)] = self

    def release(self) -> None:
        if self._fd is None:
            return
        self._users -= 1
        if self._users > 0:
            return
        fd, self._fd = self._fd, None
        self._held_here.pop(_key(self.path), None)
        try:
            os.ftruncate(fd, 0)  # an empty lock file reads as "free" for the pid fallback
        except OSError:
            pass
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(fd)


def _forget_locks_in_forked_child() -> None:
    """A forked child shares the parent's lock descriptor; closing its copy (no unlock, no truncate) means
    the lock still dies with the parent, so `-r` right after a kill is not refused because of an orphan."""
    for lock in list(FolderLock._held_here.values()):
        if lock._fd is not None:
            try:
                os.close(lock._fd)
            except OSError:
                pass
            lock._fd = None
    FolderLock._held_here.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_forked_child)


def _key(path: Path) -> str:
    return os.path.realpath(path)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _busy_message(folder: Path, pid: int | None) -> str:
    who = f"process {pid}" if pid else "another process"
    return (
        f'run folder "{folder}" is in use by {who}; two runs must never write one folder. '
        "Wait for it to finish or stop it, then resume with: " + tool_command("-r", folder)
    )
