"""Locks on files that die with their process, however it dies: how kit.background tells a
running process from a crash's leftovers. flock on Linux and macOS; msvcrt's byte locks on
Windows (where fcntl is missing).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO


def hold_lock(path: Path, wait: float = 0.0) -> TextIO | None:
    """Take the exclusive lock on `path`, kept while the returned file stays open; None if
    another process holds it for longer than `wait` seconds.

    The lock dies with its process, however it dies (a kill too), so "is it running" is the
    question "is its lock held", never "does a process with that pid exist" (a pid is reused,
    and a killed process may linger unreaped).
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
    handle = open(descriptor, "r+", encoding="utf-8", newline="")  # noqa: SIM115 - kept open
    deadline = time.monotonic() + wait
    while not _LOCKS.take(handle, exclusive=True):
        # A status check holds the lock for a moment: try again briefly.
        if time.monotonic() >= deadline:
            handle.close()
            return None
        time.sleep(0.02)
    return handle


def lock_held(path: Path) -> bool:
    """Whether a live process holds the lock on `path`."""
    if not path.exists():
        return False
    with open(path, "r+", encoding="utf-8", newline="") as handle:
        if not _LOCKS.take(handle, exclusive=False):
            return True
        _LOCKS.release(handle)
        return False


def write_pid(lock: TextIO) -> None:
    """Note this process's pid in the lock file it holds (for "which process" messages)."""
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()


def read_pid(path: Path) -> int | None:
    """The pid noted in a lock file, if any."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isascii() and text.isdigit() else None


class _FileLocks:
    """Locks with flock (Linux, macOS): whole-file, advisory, shared for a status check."""

    def __init__(self, fcntl: Any) -> None:
        self.fcntl = fcntl

    def take(self, handle: TextIO, exclusive: bool) -> bool:
        kind = self.fcntl.LOCK_EX if exclusive else self.fcntl.LOCK_SH
        try:
            self.fcntl.flock(handle, kind | self.fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # held; any other error (no locks on this file system) is raised
        return True

    def release(self, handle: TextIO) -> None:
        self.fcntl.flock(handle, self.fcntl.LOCK_UN)


class _ByteLocks:
    """Locks with msvcrt.locking (Windows): one byte far past the pid, because Windows' locks
    are mandatory and the pid must stay readable. There are no shared locks: a status check
    takes the byte for a moment, so two checks at once may see each other as the holder (the
    pid and alive checks that follow tell them apart)."""

    AT = 1 << 20

    def __init__(self, msvcrt: Any) -> None:
        self.msvcrt = msvcrt

    def take(self, handle: TextIO, exclusive: bool) -> bool:
        return self._at_lock_byte(handle, self.msvcrt.LK_NBLCK)

    def release(self, handle: TextIO) -> None:
        self._at_lock_byte(handle, self.msvcrt.LK_UNLCK)

    def _at_lock_byte(self, handle: TextIO, mode: int) -> bool:
        """msvcrt.locking on the lock byte (it acts at the descriptor's position), with the
        position moved there and back under the text file's buffer, which never sees it."""
        handle.flush()
        descriptor = handle.fileno()
        position = os.lseek(descriptor, 0, os.SEEK_CUR)
        os.lseek(descriptor, self.AT, os.SEEK_SET)
        try:
            self.msvcrt.locking(descriptor, mode, 1)
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EDEADLK):
                return False  # held (Windows says EACCES, or EDEADLOCK after its retries)
            raise
        finally:
            os.lseek(descriptor, position, os.SEEK_SET)
        return True


def _system_locks() -> _FileLocks | _ByteLocks:
    """flock where the system has it, else Windows' byte locks."""
    if sys.platform != "win32":
        with contextlib.suppress(ImportError):
            return _FileLocks(importlib.import_module("fcntl"))
    return _ByteLocks(importlib.import_module("msvcrt"))


_LOCKS = _system_locks()
