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
from kit.locks import hold_lock, lock_held, read_pid, write_pid
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
        # Only the lock's holder writes or removes the state: what is there is a crash's.
        _remove(managed.state_file)
        _remove(managed.request_file("stop"))  # an old request is not for us
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


def on_request(
    managed: Managed, what: str, act: Callable[[], None], until: threading.Event | None = None
) -> None:
    """Call `act` each time a `what` request appears (a thread watches for the file), until
    `until` is set."""
    path = managed.request_file(what)

    def watch() -> None:
        while until is None or not until.is_set():
            try:
                if path.exists():
                    path.unlink()
                    act()
            except OSError:
                pass  # Windows: the requester still has the file open; the next look takes it
            time.sleep(REQUEST_POLL)

    name = f"{managed.folder.name}-{managed.name}-{what}"
    threading.Thread(target=watch, daemon=True, name=name).start()


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
        _remove(managed.state_file)


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
    process = spawn(command, managed.log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = running(managed)
        if state is not None and _started_by(state["pid"], process.pid):
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
    """Stop `managed`'s process (one still starting too): ask, then terminate, then kill;
    remove its state. Whether one was running."""
    state = running(managed)
    pid = state["pid"] if state is not None else _starting(managed)
    if pid is None:
        return False
    if pid == os.getpid():
        raise ValueError("refusing to stop this very process")
    try:
        target: psutil.Process | None = psutil.Process(pid)  # its start time guards a reuse
    except psutil.NoSuchProcess:
        target = None
    request(managed, "stop")
    _wait_for_end(target, timeout)
    _end(target, pid)
    if running(managed) is None:  # not a process that started meanwhile
        _remove(managed.state_file)
    _remove(managed.request_file("stop"))
    return True


def end(process: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """Terminate a process this one started, then kill it if it lingers, and reap it."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)
    _children.pop(process.pid, None)


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


def _started_by(pid: int, launched: int) -> bool:
    """Whether `pid` is the process started as `launched`: the same, or its child (on Windows
    a venv's python.exe is a launcher that runs the real interpreter as its child)."""
    if pid == launched:
        return True
    try:
        return psutil.Process(pid).ppid() == launched
    except psutil.Error:
        return False


def _starting(managed: Managed) -> int | None:
    """The pid of a kit process that holds `managed`'s lock but has not published yet."""
    pid = read_pid(managed.lock)
    if pid is None or not lock_held(managed.lock) or not alive(pid):
        return None
    try:
        command = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return None
    return pid if " -m kit." in f" {command}" else None  # never a stranger's reused pid


def _still_running(target: psutil.Process | None) -> bool:
    """Whether `target` runs (psutil checks it is the same process, not a reused pid)."""
    try:
        return target is not None and target.is_running() and target.status() != "zombie"
    except psutil.NoSuchProcess:
        return False


def _wait_for_end(target: psutil.Process | None, timeout: float) -> None:
    """Wait until `target` has ended, `timeout` seconds at most."""
    if target is not None and target.pid in _children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            _children[target.pid].wait(timeout)  # reaps it too
        return
    deadline = time.monotonic() + timeout
    while _still_running(target) and time.monotonic() < deadline:
        time.sleep(0.05)


def _end(target: psutil.Process | None, pid: int, grace: float = 3.0) -> None:
    """Terminate `target` if it still runs, then kill it; psutil does each the system's way."""
    child = _children.get(pid)
    if child is not None:
        end(child, grace)
        return
    for ending in ("terminate", "kill"):
        if not _still_running(target):
            return
        with contextlib.suppress(psutil.Error):
            getattr(target, ending)()
        _wait_for_end(target, grace)


def _remove(path: Path) -> None:
    """Delete `path` if it is there (on Windows a file another process has open stays)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
