"""Background processes the kit starts (virtual boards, the local cloud) and finds again.

They are started in a session of their own, so they outlive the notebook kernel or terminal
that started them; other processes find them through a state file with their pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

# Processes started here: a stopped child stays a zombie until reaped, and would look alive.
_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start `command` detached from this process, its output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    _children[process.pid] = process
    return process


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
    return True


def stop(pid: int, timeout: float = 10.0) -> None:
    """Ask a process to stop (SIGTERM); kill it if it has not after `timeout` seconds."""
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
