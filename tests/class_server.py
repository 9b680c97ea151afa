"""A class server for tests, started as the instructor starts it: `kit class init`, a roster,
`kit class serve` (HTTPS on a free port), in a KIT_HOME of its own; stopped with everything it
started."""

from __future__ import annotations

import contextlib
import html
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from kit import steps
from kit.places import using_home


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def kit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args], env=env, capture_output=True, text=True
    )


def log_in_from_a_terminal(
    url: str, user: str, fingerprint: str, password: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kit use --cloud class` as a student types it, the password on standard input."""
    login = ["--url", url, "--user", user, "--fingerprint", fingerprint, "--password-stdin"]
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", "use", "--cloud", "class", *login],
        input=password + "\n",
        env=env,
        capture_output=True,
        text=True,
    )


def kit_ok(env: dict[str, str], *args: str) -> str:
    done = kit(env, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class RunningClass:
    env: dict[str, str]
    site: str  # https://127.0.0.1:<port>
    port: str
    instructor_password: str
    fingerprint: str
    handout: Path
    cards: dict[str, tuple[str, str]]  # name on the card -> (username, password)


def class_env(home: Path) -> dict[str, str]:
    """An instructor's environment: their own data folder and free broker ports."""
    return {
        **os.environ,
        "KIT_HOME": str(home),
        "KIT_BROKER_PORT": free_port(),
        "KIT_BROKER_WS_PORT": free_port(),
    }


def new_class(home: Path, names: list[str], roster_file: Path) -> RunningClass:
    """`kit class init` and `kit class roster add` for these names (nothing served yet)."""
    env = class_env(home)
    made = kit_ok(env, "class", "init", "--host", "localhost")
    roster_file.write_text("name\n" + "\n".join(names) + "\n", encoding="utf-8")
    added = kit_ok(env, "class", "roster", "add", str(roster_file))
    handout = Path(re.search(r"handout: (\S+)", added).group(1))
    cards = {
        html.unescape(name): (username, password)
        for name, username, password in re.findall(
            r"<h2>([^<]*)</h2>.*?Username <code>([^<]+)</code>.*?Password <code>([^<]+)</code>",
            handout.read_text(),
            re.S,
        )
    }
    port = free_port()
    return RunningClass(
        env,
        f"https://127.0.0.1:{port}",
        port,
        re.search(r"password (\S+) \(shown only now\)", made).group(1),
        re.search(r"\(SHA-256\): (\S+)", made).group(1),
        handout,
        cards,
    )


class Serving:
    """`kit class serve` as a process of its own, which a test may restart."""

    def __init__(self, running: RunningClass, extra: tuple[str, ...]) -> None:
        self.running, self.extra = running, extra
        self.log = Path(running.env["KIT_HOME"]) / "serve.log"  # a file: a full pipe stalls
        self.process = self._start()

    def _start(self) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "kit.cli", "class", "serve", "--port", self.running.port]
        with self.log.open("a") as output:
            process = subprocess.Popen(
                [*command, *self.extra],
                env=self.running.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.running.site}/login", verify=False, timeout=2)
                return process
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.terminate()  # never left running by a failed test
                    process.wait(timeout=30)
                    raise AssertionError(
                        "the class site never answered:\n" + self.log.read_text()
                    ) from None
                time.sleep(0.3)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def restart(self, pause: float = 0.0) -> None:
        """Stop the site, wait `pause` seconds (the boards go on publishing), start it again."""
        self.stop()
        time.sleep(pause)
        self.process = self._start()


@contextlib.contextmanager
def serving(running: RunningClass, *extra: str) -> Iterator[Serving]:
    """`kit class serve` until the block ends; then the class's local cloud stops too."""
    served = None
    try:
        served = Serving(running, extra)
        yield served
    finally:
        if served is not None:
            served.stop()
        with using_home(Path(running.env["KIT_HOME"])):
            steps.stop_everything()
