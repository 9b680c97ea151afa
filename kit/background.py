"""Background processes the kit starts (virtual boards, the local cloud) and finds again.

They are started in a session of their own, so they outlive the notebook kernel or terminal
that started them; other processes find them through a state file with their pid. They get only
the environment they need (never KIT_WIFI_PASSWORD or cloud credentials: /proc/<pid>/environ of
a long-running process is a place secrets leak from) and create files readable by their owner.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TextIO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: pids only
    fcntl = None  # type: ignore[assignment]

from kit.places import kit_home, open_private

# What a background process needs from the environment: where things are, how to decode text,
# and the Python it runs in. Everything else (passwords, AWS keys, tokens) stays behind.
PASSED_ON = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
    "XDG_DATA_HOME",  # where platformdirs puts the data folder
    "SYSTEMROOT",  # Windows: sockets need it
    "APPDATA",
    "LOCALAPPDATA",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "KIT_HOME",
)

# Processes started here: a stopped child stays a zombie until reaped, and would look alive.
_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start `command` detached from this process, its output appended to `log`."""
    with open_private(log) as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=environment(),
            umask=0o077 if os.name == "posix" else -1,  # -1: leave it (POSIX only)
        )
    _children[process.pid] = process
    return process


def environment() -> dict[str, str]:
    """The environment a background process starts with."""
    passed = {
        name: value
        for name, value in os.environ.items()
        if name in PASSED_ON or name.startswith("LC_")
    }
    # The data folder this process uses, whether KIT_HOME or chosen in code (kit demo's).
    return {**passed, "KIT_HOME": str(kit_home(create=False)), "PYTHONUNBUFFERED": "1"}


def hold_lock(path: Path, wait: float = 0.0) -> TextIO | None:
    """Take the exclusive lock on `path`, kept while the returned file stays open; None if
    another process holds it for longer than `wait` seconds.

    The lock dies with its process, however it dies (kill -9 too), so "is it running" is the
    question "is its lock held", never "does a process with that pid exist" (a pid is reused,
    and a killed process may linger as a zombie).
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    handle = open(descriptor, "r+", encoding="utf-8")  # noqa: SIM115 - the caller keeps it open
    if fcntl is None:  # pragma: no cover - Windows: callers fall back to pids
        return handle  # type: ignore[unreachable]  # mypy checks as POSIX, where fcntl imports
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            # A status check holds the lock shared for a moment: try again briefly.
            if time.monotonic() >= deadline:
                handle.close()
                return None
            time.sleep(0.02)
        else:
            return handle


def lock_held(path: Path) -> bool | None:
    """Whether a live process holds the lock on `path` (None where locks are unknown)."""
    if fcntl is None:  # pragma: no cover
        return None  # type: ignore[unreachable]  # Windows only: mypy checks as POSIX
    if not path.exists():
        return False
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
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


def alive(pid: int) -> bool:
    """Whether the process `pid` runs."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def noted_running(pid_file: Path, module: str) -> int | None:
    """The pid `pid_file` notes, if that process runs `python -m module`."""
    pid = read_pid(pid_file)
    return pid if pid is not None and runs_module(pid, module) else None


def stop_noted(pid_file: Path, module: str) -> bool:
    """Stop the process `pid_file` notes (if it is `module`'s) and forget it; whether it ran."""
    pid = noted_running(pid_file, module)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    stop(pid)
    return True


def runs_module(pid: int, module: str) -> bool:
    """Whether `pid` runs and is `python -m module` (where the system says: Linux), so that a
    pid file left from before a reboot never names another program's process."""
    if not alive(pid):
        return False
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc here: alive is all that can be known
    if not command_line:
        # Empty while the process is still replacing itself with its program (the moment just
        # after spawn() returns): it is the one just started, not a stranger.
        return True
    return module.encode() in command_line.split(b"\0")


def _zombie(pid: int) -> bool:
    """Whether `pid` has exited but its parent has not collected it yet (Linux; else False).

    A board started by a notebook's kernel is the kernel's child: stopped from a terminal
    (`kit stop`), it stays a zombie until the kernel looks, and signal 0 still reaches it.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "Z"  # the state after "(name) "


def stop(pid: int, timeout: float = 10.0) -> None:
    """Ask a process to stop (SIGTERM); kill it if it has not after `timeout` seconds."""
    if pid <= 1 or pid == os.getpid():  # 0 and -n mean process groups, 1 is init
        raise ValueError(f"refusing to stop process {pid}")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def last_line(path: Path) -> str:
    """The last line of a log, to say why a process stopped."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"
