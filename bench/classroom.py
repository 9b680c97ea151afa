"""What the class benchmarks share: a class made and served as an instructor does it, in a
KIT_HOME of its own, and the server's resources from /proc."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def kit(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def memory(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    now = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    return now / 1024, peak / 1024


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class ServedClass:
    env: dict[str, str]
    site: str
    logins: list[tuple[str, str]]  # (username, password) per student, roster order
    server_pid: int
    broker_pid: int  # the local cloud's service


@contextlib.contextmanager
def served_class(students: int) -> Iterator[ServedClass]:
    """A class of `students` on the local cloud, served over HTTPS until the block ends."""
    home = Path(tempfile.mkdtemp(prefix="kit-class-bench-"))
    env = {
        **os.environ,
        "KIT_HOME": str(home),
        "KIT_BROKER_PORT": free_port(),
        "KIT_BROKER_WS_PORT": free_port(),
    }
    kit(env, "class", "init", "--host", "localhost")
    roster = home / "roster.csv"
    roster.write_text("name\n" + "".join(f"Student {i}\n" for i in range(students)))
    handout = Path(
        re.search(r"handout: (\S+)", kit(env, "class", "roster", "add", str(roster))).group(1)
    )
    logins = re.findall(
        r"Username <code>([^<]+)</code><br>Password <code>([^<]+)</code>", handout.read_text()
    )
    port = free_port()
    command = [sys.executable, "-m", "kit.cli", "class", "serve", "--port", port]
    server = subprocess.Popen(
        [*command, "--broker-host", "localhost"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                ssl.get_server_certificate(("127.0.0.1", int(port)), timeout=1)
                break
            except OSError:
                assert server.poll() is None, "the class server stopped"
                time.sleep(0.2)
        service = json.loads((home / "cloud" / "service.json").read_text())
        yield ServedClass(env, f"https://127.0.0.1:{port}", logins, server.pid, service["pid"])
    finally:
        server.terminate()
        server.wait(timeout=30)
        subprocess.run([sys.executable, "-m", "kit.cli", "stop"], env=env, capture_output=True)
