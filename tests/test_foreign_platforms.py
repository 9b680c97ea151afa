"""The course as Windows and macOS run it, on Linux: every Python process of these tests runs
under tests/foreign/shim.py, which takes away from the kit's own modules what that system lacks
(fcntl, pty, termios, resource, /proc and os.kill on Windows; /proc and the pty on macOS).
Under each, the whole journey runs (`kit demo`: notebooks 00 to 04 with nbclient, `kit stop`,
`kit class provision --virtual` of 5 students, `teardown`), and nothing is left running.

Kept apart from these: what only the systems themselves can show (the console broadcast, job
objects, case-insensitive file systems, firewall prompts); the GitHub workflow runs there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from class_server import free_port

FOREIGN = Path(__file__).resolve().parent / "foreign"
SYSTEMS = ["win32", "darwin"]
KIT_MODULE = re.compile(r"\bkit(\.|$)")


def foreign_env(system: str, home: Path) -> dict[str, str]:
    """An environment whose Python processes run as on `system`, in their own data folder."""
    path = [str(FOREIGN / system), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(part for part in path if part),
        "KIT_HOME": str(home),
        "KIT_BROKER_PORT": free_port(),
        "KIT_BROKER_WS_PORT": free_port(),
    }


def kit(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kit_ok(env: dict[str, str], *args: str) -> str:
    done = kit(env, *args)
    assert done.returncode == 0, f"kit {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def left_running(under: Path) -> list[str]:
    """The processes whose data folder is under `under` (what a test started and left)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "environ"]):
        if process.info["pid"] == os.getpid():
            continue
        home = (process.info["environ"] or {}).get("KIT_HOME", "")
        if home.startswith(str(under)):
            found.append(" ".join(process.info["cmdline"] or []))
    return found


def wait_until_nothing_runs(under: Path, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (running := left_running(under)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return running


@pytest.mark.parametrize("system", SYSTEMS)
def test_the_shim_takes_away_what_the_system_lacks(system: str, tmp_path: Path) -> None:
    # Without this, the journeys below would prove nothing: the kit must meet the gaps.
    probe = """
import os
from kit import locks
from kit.sim import serial_port
print(type(locks._LOCKS).__name__, serial_port.pty is None)
space = {"__name__": "kit.probe"}
tries = ["open('/proc/self/stat').read()", "open('/proc/1/cmdline').read()"]
tries.append("os.kill(os.getpid(), 0)")
for code in tries:
    try:
        exec(code, {**space, "os": os})
        print("allowed")
    except OSError:
        print("refused")
"""
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=foreign_env(system, tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    locks, kill = ("_ByteLocks", "refused") if system == "win32" else ("_FileLocks", "allowed")
    assert done.stdout.split() == [locks, "True", "refused", "refused", kill]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("system", SYSTEMS)
def test_the_course_runs_and_stops_as_on(system: str, tmp_path: Path) -> None:
    env = foreign_env(system, tmp_path / "home")
    build = tmp_path / "build"
    try:
        demo = kit(env, "demo", "--build", str(build))
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        kit_ok({**env, "KIT_HOME": str(build / "kit-home")}, "stop")
        assert wait_until_nothing_runs(tmp_path) == []
        # It stopped because it was asked, not terminated: its own last words are in its log.
        board_log = build / "kit-home" / "boards" / "default" / "process.log"
        assert board_log.read_text().strip().endswith("Virtual board stopped.")

        kit_ok(env, "class", "init", "--host", "localhost")
        roster = tmp_path / "roster.csv"
        roster.write_text("name\n" + "\n".join(f"Student {n}" for n in range(5)) + "\n")
        provision = ("class", "provision", str(roster), "--virtual", "--interval", "1")
        made = kit_ok(env, *provision, "--broker-host", "localhost")
        assert "Registered 5 virtual board(s) now" in made
        assert left_running(tmp_path)  # the boards' fleet and the local cloud run
        stopped = kit_ok(env, "stop")  # everything the kit runs, the class's boards too
        assert "Stopped the class's virtual boards." in stopped, stopped
        assert wait_until_nothing_runs(tmp_path) == []
        gone = kit_ok(env, "class", "teardown", "--yes", "--accounts")
        assert "Removed 5 device(s)" in gone
        kit_ok(env, "stop")
        assert wait_until_nothing_runs(tmp_path) == []
    finally:
        kit(env, "stop")
        kit({**env, "KIT_HOME": str(build / "kit-home")}, "stop")


# What differs between systems about processes: only kit/background.py may use it.
PROCESS_CALLS = re.compile(
    r"os\.kill\b|os\.killpg|signal\.(SIG|signal)|\bpsutil\b|['\"]/proc/(?!self/fd/0)"
    r"|start_new_session|send_signal|creationflags|os\.exec"
)


def test_only_background_checks_signals_or_reads_other_processes() -> None:
    kit = Path(__file__).resolve().parent.parent / "kit"
    found = [
        f"{path.relative_to(kit)}:{number}: {line.strip()}"
        for path in sorted(kit.rglob("*.py"))
        if path.name != "background.py" or path.parent != kit
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PROCESS_CALLS.search(line)
    ]
    assert found == [], "\n".join(found)
