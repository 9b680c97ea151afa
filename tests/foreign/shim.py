"""Take away, from the kit's own modules, what Windows or macOS lacks, so Linux CI runs the
course the way those systems would (the foreign-platform tests).

Started by sitecustomize.py in win32/ or darwin/ when that folder is on PYTHONPATH, so every
Python process of a test (the CLI, kernels, background processes: the kit passes PYTHONPATH
on) runs under it. Only calls made from `kit` modules are refused; the libraries keep what
Linux gives them (pyserial and psutil use fcntl and /proc on Linux, as they should).

- win32: no fcntl, pty, termios, tty or resource; msvcrt instead (byte locks, simulated with
  flock on another open file description, which like Windows' locks conflict within a
  process too); os.kill refused (on Windows signal 0 is Ctrl+C to a whole console, and any
  other number terminates); no SIGTERM handler (Windows never delivers it); no /proc.
- darwin: no /proc; no pty (macOS' pty answers poll() with POLLNVAL, so the kit must not need
  one).

What this cannot show: the console broadcast itself, job objects, case-insensitive file
systems, firewall prompts, and the kit's own `sys.platform == "win32"` branches (sys.platform
stays "linux": changing it breaks the standard library).
"""

from __future__ import annotations

import builtins
import fcntl
import importlib
import io
import os
import signal
import sys
import types
from typing import Any

MISSING = {
    "win32": {"fcntl", "pty", "termios", "tty", "resource"},
    "darwin": {"pty"},
}


STDLIB = os.path.dirname(os.__file__)


def _from_kit(depth: int = 2, through_stdlib: bool = True) -> bool:
    """Whether the code that called is a kit module: the nearest caller, or (through_stdlib)
    the nearest one outside the standard library, so that pathlib's read from kit counts and a
    library's own read (psutil's /proc on Linux) does not."""
    frame = sys._getframe(depth)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name == "kit" or name.startswith("kit."):
            return True
        filename = frame.f_code.co_filename
        in_stdlib = filename.startswith(STDLIB) and "site-packages" not in filename
        if not (through_stdlib and in_stdlib):
            return False
        frame = frame.f_back
    return False


def _fake_msvcrt() -> types.ModuleType:
    """Windows' msvcrt.locking, as far as the kit uses it: non-blocking byte locks."""
    module = types.ModuleType("msvcrt")
    module.LK_UNLCK, module.LK_LOCK, module.LK_NBLCK, module.LK_RLCK, module.LK_NBRLCK = range(5)

    def locking(fd: int, mode: int, nbytes: int) -> None:
        if mode == module.LK_UNLCK:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PermissionError(13, "Permission denied") from None  # what Windows raises

    module.locking = locking
    return module


def install(system: str) -> None:
    """Take away from kit modules what `system` lacks."""
    missing = MISSING[system]
    # Only kit modules see msvcrt: the standard library takes its presence for Windows.
    given = {"msvcrt": _fake_msvcrt()} if system == "win32" else {}
    real_import = builtins.__import__
    real_import_module = importlib.import_module

    def guarded_import(name: str, globals: Any = None, *args: Any, **kwargs: Any) -> Any:
        importer = (globals or {}).get("__name__", "")
        if importer == "kit" or importer.startswith("kit."):
            if name.split(".")[0] in missing:
                raise ImportError(f"No module named '{name}' (on {system})")
            if name in given:
                return given[name]
        return real_import(name, globals, *args, **kwargs)

    def guarded_import_module(name: str, package: str | None = None) -> types.ModuleType:
        if _from_kit():
            if name.split(".")[0] in missing:
                raise ImportError(f"No module named '{name}' (on {system})")
            if name in given:
                return given[name]
        return real_import_module(name, package)

    builtins.__import__ = guarded_import
    importlib.import_module = guarded_import_module  # type: ignore[assignment]

    real_open, real_io_open, real_os_open = builtins.open, io.open, os.open

    def no_proc(opener: Any) -> Any:
        def guarded(file: Any, *args: Any, **kwargs: Any) -> Any:
            proc = str(file).startswith("/proc/") and not str(file).startswith("/proc/self/fd")
            if proc and _from_kit():
                raise FileNotFoundError(2, f"No such file or directory (on {system})", file)
            return opener(file, *args, **kwargs)

        return guarded

    builtins.open = no_proc(real_open)
    io.open = no_proc(real_io_open)
    os.open = no_proc(real_os_open)

    if system == "win32":
        real_signal = signal.signal

        def guarded_signal(signum: int, handler: Any) -> Any:
            # Windows never delivers SIGTERM: terminating a process there ends it at once, so
            # the kit must stop its processes by asking (the stop request), not by signal.
            if signum == signal.SIGTERM and _from_kit(through_stdlib=False):
                return signal.getsignal(signum)
            return real_signal(signum, handler)

        signal.signal = guarded_signal
        real_kill = os.kill

        def guarded_kill(pid: int, sig: int) -> None:
            # Only the kit's own calls: subprocess and psutil end processes the system's way.
            if _from_kit(through_stdlib=False):
                raise OSError(87, f"The parameter is incorrect (os.kill({pid}, {sig}) on Windows)")
            real_kill(pid, sig)

        os.kill = guarded_kill
