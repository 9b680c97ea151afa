"""JupyterLab on exactly `kit lab`'s command line (kit.lab.command) and its environment, in a
temporary data folder with Jupyter folders of its own, its output in a log file (not a terminal,
as under a launcher or CI), and its REST API at hand. Everything it started is stopped after.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from kit import environment, lab


@dataclass
class Lab:
    """A running JupyterLab: its address, its login token, its log and runtime folder."""

    url: str
    token: str
    log: Path
    runtime: Path

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A REST call with the token; the answer must be a success."""
        answer = httpx.request(
            method,
            f"{self.url}{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
            **kwargs,
        )
        answer.raise_for_status()
        return answer

    def websocket_url(self, path: str) -> str:
        return f"ws{self.url.removeprefix('http')}{path}?token={self.token}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_lab(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[Lab]:
    """Start JupyterLab as `kit lab --no-browser` would, with `env` added to its environment
    (the test's own environment decides the command line, as kit lab's does)."""
    home, folder, runtime = tmp_path / "kit-home", tmp_path / "notebooks", tmp_path / "jr"
    folder.mkdir()
    port = free_port()
    command = lab.command(folder, home, port, open_browser=False)
    full_env = {
        **environment.for_jupyterlab(str(Path(sys.executable).parent), str(lab.kernel_spec(home))),
        "KIT_HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jc"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jd"),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        **(env or {}),
    }
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env
        )
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"token=([0-9a-f]+)", log.read_text(errors="replace"))):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield Lab(f"http://127.0.0.1:{port}", found.group(1), log, runtime)
    finally:
        _stop(server)


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Stop JupyterLab (which stops its kernels and terminals), then anything it left behind."""
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(server.pid).children(recursive=True)
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=10)
