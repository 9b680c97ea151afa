"""Background processes the kit starts (the local cloud, virtual boards, the boards' fleet, the
class site) and finds again: the one place that knows how processes differ between systems.

Each runs detached from whoever started it (a new session on Linux and macOS; a new process
group with no console, outside the starter's job, on Windows), so it outlives the notebook
kernel or terminal that started it, and Ctrl+C there does not reach it. Its files sit in one
folder under one name (a `Managed`): `<name>.lock`, held while it lives (a lock dies with its
process, however it dies), `<name>.json`, its state with its pid, and `<name>.stop`, the request
to stop that every system can make. Whoever stops a process removes its state.

Processes are asked about through psutil, never `os.kill(pid, 0)` (on Windows that is Ctrl+C to
a whole console) or /proc (Linux only). They get only the environment they need (never
KIT_WIFI_PASSWORD or cloud credentials) and create files readable by their owner.
"""

from __future__ import annotations

import _thread
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psutil

from kit.errors import DamagedFileError
from kit.places import kit_home, open_private, read_json, write_private

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
REQUEST_POLL = 0.1  # seconds between looks for a stop or reset request

# Processes started here: a stopped child stays a zombie until reaped, and would look alive.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Managed:
    """Where a background process keeps its lock, its state, its log and its requests."""

    folder: Path
    name: str  # "service", "board", "fleet", "site"
    log_name: str = ""  # its log file, `<name>.log` unless given

    @property
    def lock(self) -> Path:
        return self.folder / f"{self.name}.lock"

    @property
    def state_file(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return self.folder / (self.log_name or f"{self.name}.log")

    def request_file(self, what: str) -> Path:
        """The file whose appearance asks the process to `what` ("stop", "reset")."""
        return self.folder / f"{self.name}.{what}"


# -- in the background process ---------------------------------------------------------------


def claim(managed: Managed, wait: float = 0.0) -> TextIO | None:
    """Take `managed`'s lock for this process's lifetime, noting its pid; None if another live
    process holds it for longer than `wait` seconds."""
    lock = hold_lock(managed.lock, wait)
    if lock is not None:
        write_pid(lock)
        managed.request_file("stop").unlink(missing_ok=True)  # an old request is not for us
    return lock


def publish(managed: Managed, state: dict[str, Any]) -> None:
    """Write this process's state (its pid added), for others to find it by."""
    write_private(managed.state_file, json.dumps({**state, "pid": os.getpid()}) + "\n")


def stop_requested(managed: Managed) -> threading.Event:
    """An event set when someone asks this process to stop: a stop request (every system),
    SIGTERM (Linux and macOS) or Ctrl+C in its own terminal."""
    stopped = threading.Event()
    on_request(managed, "stop", stopped.set)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        signal.signal(signal.SIGINT, lambda *_: stopped.set())
    return stopped


def on_request(managed: Managed, what: str, act: Callable[[], None]) -> None:
    """Call `act` each time a `what` request appears (a thread watches for the file)."""
    path = managed.request_file(what)

    def watch() -> None:
        while True:
            if path.exists():
                path.unlink(missing_ok=True)
                act()
            time.sleep(REQUEST_POLL)

    threading.Thread(target=watch, daemon=True, name=f"{managed.name}-{what}").start()


def interrupt_on_stop(managed: Managed) -> None:
    """Turn a stop request into Ctrl+C for this process's main thread, for a server (uvicorn)
    that shuts down gracefully on Ctrl+C; no system signal is sent, so Windows does it too."""
    on_request(managed, "stop", lambda: _thread.interrupt_main(signal.SIGINT))


@contextlib.contextmanager
def serving(managed: Managed, state: dict[str, Any]) -> Iterator[None]:
    """Publish `state` while the block runs; remove it however the block ends."""
    publish(managed, state)
    try:
        yield
    finally:
        managed.state_file.unlink(missing_ok=True)


# -- from outside: start, find, ask, stop ----------------------------------------------------


def running(managed: Managed) -> dict[str, Any] | None:
    """The state of `managed`'s process if it runs (its lock is held by the pid its state
    names), else None; a state file left by a crash is never taken for a live process."""
    try:
        state = read_json(managed.state_file, "")
    except DamagedFileError:
        return None
    pid = state.get("pid") if isinstance(state, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return None
    if not lock_held(managed.lock) or read_pid(managed.lock) != pid:
        return None
    return state if alive(pid) else None


def launch(
    managed: Managed,
    command: list[str],
    timeout: float,
    failed: Callable[[str], Exception],
) -> dict[str, Any]:
    """Start `command` (a `python -m` entry point that claims `managed`) and wait until it has
    published its state; raise `failed(reason)` if it stops or does not start in time."""
    managed.state_file.unlink(missing_ok=True)  # a stale one from a crash
    process = spawn(command, managed.log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = running(managed)
        if state is not None and state["pid"] == process.pid:
            return state
        if process.poll() is not None:
            raise failed(f"it stopped while starting: {last_line(managed.log)}")
        time.sleep(0.05)
    end(process)
    raise failed(f"it did not start within {timeout:.0f} s (its log: {managed.log})")


def request(managed: Managed, what: str) -> None:
    """Ask `managed`'s running process to do `what` (it watches for the request)."""
    managed.request_file(what).write_text(f"{what}\n", encoding="utf-8")


def stop(managed: Managed, timeout: float = 10.0) -> bool:
    """Stop `managed`'s process: ask, then terminate, then kill; remove its state. Whether one
    was running."""
    state = running(managed)
    if state is not None:
        pid = state["pid"]
        request(managed, "stop")
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid != os.getpid():  # a board run in this process stops on the request alone
            _end_pid(pid)
    managed.state_file.unlink(missing_ok=True)
    managed.request_file("stop").unlink(missing_ok=True)
    return state is not None


def end(process: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """Terminate a process this one started, then kill it if it lingers, and reap it."""
    with contextlib.suppress(ProcessLookupError, OSError):
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start `command` detached from this process, its output appended to `log`."""
    with open_private(log) as out:
        options: dict[str, Any] = {
            "stdin": subprocess.DEVNULL,
            "stdout": out,
            "stderr": subprocess.STDOUT,
            "env": environment(),
        }
        if sys.platform == "win32":
            # A process group of its own (Ctrl+C in the console does not reach it), no console
            # window, and out of the job that Windows Terminal or VS Code kill with their tabs;
            # a job that forbids leaving it refuses the last flag, so try without it.
            detached = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
            try:
                process = subprocess.Popen(
                    command,
                    creationflags=detached | subprocess.CREATE_BREAKAWAY_FROM_JOB,
                    **options,
                )
            except OSError:
                process = subprocess.Popen(command, creationflags=detached, **options)
        else:
            process = subprocess.Popen(command, start_new_session=True, umask=0o077, **options)
    _children[process.pid] = process
    return process


def become(command: list[str], env: dict[str, str]) -> int:
    """Run `command` in this process's place (Linux, macOS: exec, so Ctrl+C and a closing
    terminal reach it directly), or as a child that this process waits for (Windows)."""
    if sys.platform == "win32":
        return subprocess.call(command, env=env)
    else:  # mypy skips the other platform's branch only inside if/else
        os.execve(command[0], command, env)


def environment() -> dict[str, str]:
    """The environment a background process starts with."""
    passed = {
        name: value
        for name, value in os.environ.items()
        if name in PASSED_ON or name.startswith("LC_")
    }
    # The data folder this process uses, whether KIT_HOME or chosen in code (kit demo's).
    return {**passed, "KIT_HOME": str(kit_home(create=False)), "PYTHONUNBUFFERED": "1"}


def alive(pid: int) -> bool:
    """Whether the process `pid` runs (one that exited but is not reaped yet does not)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # another user's: it exists


def last_line(path: Path) -> str:
    """The last line of a log, to say why a process stopped."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


def _end_pid(pid: int, grace: float = 3.0) -> None:
    """Terminate `pid` if it still runs, then kill it; psutil does each the system's way."""
    child = _children.pop(pid, None)
    if child is not None:
        end(child, grace)
        return
    for ending in ("terminate", "kill"):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            getattr(psutil.Process(pid), ending)()
        # Not psutil's wait(): another process's child stays a zombie until its parent looks.
        deadline = time.monotonic() + grace
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive(pid):
            return


# -- locks -------------------------------------------------------------------------------------


def hold_lock(path: Path, wait: float = 0.0) -> TextIO | None:
    """Take the exclusive lock on `path`, kept while the returned file stays open; None if
    another process holds it for longer than `wait` seconds.

    The lock dies with its process, however it dies (a kill too), so "is it running" is the
    question "is its lock held", never "does a process with that pid exist" (a pid is reused,
    and a killed process may linger unreaped).
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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
        except OSError:
            return False
        return True

    def release(self, handle: TextIO) -> None:
        self.fcntl.flock(handle, self.fcntl.LOCK_UN)


class _ByteLocks:
    """Locks with msvcrt.locking (Windows): one byte far past the pid, because Windows' locks
    are mandatory and the pid must stay readable; a status check takes it for a moment."""

    AT = 1 << 20

    def __init__(self, msvcrt: Any) -> None:
        self.msvcrt = msvcrt

    def take(self, handle: TextIO, exclusive: bool) -> bool:
        position = handle.tell()
        handle.seek(self.AT)
        try:
            self.msvcrt.locking(handle.fileno(), self.msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            handle.seek(position)
        return True

    def release(self, handle: TextIO) -> None:
        handle.seek(self.AT)
        self.msvcrt.locking(handle.fileno(), self.msvcrt.LK_UNLCK, 1)
        handle.seek(0)


def _system_locks() -> _FileLocks | _ByteLocks:
    """flock where the system has it, else Windows' byte locks."""
    if sys.platform != "win32":
        with contextlib.suppress(ImportError):
            return _FileLocks(importlib.import_module("fcntl"))
    return _ByteLocks(importlib.import_module("msvcrt"))


_LOCKS = _system_locks()
