"""The local cloud as a background service: `python -m kit.cloud.service` runs it; `kit cloud
up`, `kit lab` and the setup notebook start it (start_service) and find it (service_state).

The service owns KIT_HOME/cloud/service.json (its pid, ports and broker name) and holds
service.lock for as long as it runs, so "is it running" never trusts a pid alone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

from kit import arguments, background
from kit.cloud.local import DEFAULT_PORT, DEFAULT_WS_PORT, LocalCloud, check_ports_free, cloud_dir
from kit.errors import BrokerNotRunningError, CloudError, DamagedFileError, KitError
from kit.places import private_dir, read_json, write_private
from kit.ports import MQTT_TLS_PORT, WEBSOCKET_TLS_PORT, read_port


@dataclass(frozen=True)
class ServiceState:
    """A running broker service, as other processes find it."""

    pid: int
    host: str
    port: int
    ws_port: int
    broker_host: str


def service_state() -> ServiceState | None:
    """The running service, or None (a stale state file from a crashed run is ignored)."""
    try:
        values = read_json(cloud_dir() / "service.json", "") or {}
        state = ServiceState(**values)
    except (DamagedFileError, TypeError):
        return None  # a state file from a crash, or damaged: no service to talk to
    if not _plausible(state):
        return None
    # The service holds its lock while it lives: a killed one (kill -9) leaves a state file and
    # maybe a zombie process, but never a held lock. The pid must be the lock holder's own.
    lock = cloud_dir() / "service.lock"
    held = background.lock_held(lock)
    if held is None:  # pragma: no cover - no locks (Windows): the pid alone
        return state if background.alive(state.pid) else None
    return state if held and background.read_pid(lock) == state.pid else None


def _plausible(state: ServiceState) -> bool:
    """Whether a state file's values can be a running service's (never pid 0, 1 or ours)."""
    numbers = (state.pid, state.port, state.ws_port)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        return False
    texts = (state.host, state.broker_host)
    if not all(isinstance(t, str) and t.isprintable() and len(t) < 254 for t in texts):
        return False
    return state.pid > 1 and state.pid != os.getpid() and 0 <= state.port <= 65535


def run_service(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    ws_port: int = DEFAULT_WS_PORT,
    broker_host: str | None = None,
    keep_days: float = 30,
) -> None:
    """Run the broker in the foreground until SIGTERM or Ctrl+C (what `kit cloud up` starts)."""
    private_dir(cloud_dir())
    lock = background.hold_lock(cloud_dir() / "service.lock", wait=2.0)
    if lock is None:
        pid = background.read_pid(cloud_dir() / "service.lock")
        raise CloudError(
            f"The local cloud is already running{f' (process {pid})' if pid else ''}. "
            "`kit cloud status` shows where; `kit cloud down` stops it."
        )
    background.write_pid(lock)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    # The broker's decisions (accepted, refused, closed) go to the log, for notebook 05.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kit.broker").setLevel(logging.INFO)
    cloud = LocalCloud(
        host=host, port=port, ws_port=ws_port, broker_host=broker_host, keep_days=keep_days
    )
    with cloud:
        state = ServiceState(
            os.getpid(), host, cloud.broker_port, cloud.ws_broker_port, cloud.broker_host
        )
        write_private(cloud_dir() / "service.json", json.dumps(asdict(state)) + "\n")
        print(
            f"Local cloud: MQTT over TLS on {cloud.broker_host}:{state.port}, "
            f"WebSocket over TLS on port {state.ws_port}",
            flush=True,
        )
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            (cloud_dir() / "service.json").unlink(missing_ok=True)


def start_service(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    ws_port: int = DEFAULT_WS_PORT,
    broker_host: str | None = None,
    keep_days: float = 30,
    timeout: float = 30.0,
    progress: Callable[[str], None] = lambda _: None,
) -> ServiceState:
    """Start the broker as a background process that outlives this one (or find it running).

    Two starts at once (two notebooks, two terminals) take turns: the second waits for the
    first, saying so through `progress`, and then finds the service it started.
    """
    running = service_state()
    if running is not None:
        return running
    private_dir(cloud_dir())
    starting = cloud_dir() / "starting.lock"
    lock = background.hold_lock(starting)
    if lock is None:
        other = background.read_pid(starting)
        progress(
            f"Another start of the local cloud is under way (process {other or 'unknown'}); "
            "waiting for it."
        )
        lock = background.hold_lock(starting, wait=timeout + 5)
        if lock is None:
            raise CloudError(
                f"Another start of the local cloud (process {other or 'unknown'}) has not "
                f"finished in {timeout:.0f} s. Try again in a minute, or see "
                f"{cloud_dir() / 'broker.log'}."
            )
    with lock:
        background.write_pid(lock)
        running = service_state()
        if running is not None:
            return running  # the other start got there first
        return _spawn_service(host, port, ws_port, broker_host, keep_days, timeout)


def _spawn_service(
    host: str, port: int, ws_port: int, broker_host: str | None, keep_days: float, timeout: float
) -> ServiceState:
    """Run `python -m kit.cloud.service` in the background and wait until it serves."""
    check_ports_free(host, [p for p in (port, ws_port) if p])
    (cloud_dir() / "service.json").unlink(missing_ok=True)  # a stale one from a crash
    # The service's own entry point: a background process never runs through the CLI.
    command = [
        sys.executable,
        "-m",
        "kit.cloud.service",
        "--host",
        host,
        "--port",
        str(port),
        "--ws-port",
        str(ws_port),
        "--keep-days",
        str(keep_days),
    ]
    if broker_host:
        command += ["--broker-host", broker_host]
    process = background.spawn(command, cloud_dir() / "broker.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = service_state()
        if state is not None and state.pid == process.pid:
            return state
        if process.poll() is not None:
            raise CloudError(
                "The local cloud stopped while starting: "
                + background.last_line(cloud_dir() / "broker.log")
            )
        time.sleep(0.1)
    process.kill()
    raise CloudError(
        f"The local cloud did not start within {timeout:.0f} s; see {cloud_dir() / 'broker.log'}."
    )


def stop_service(timeout: float = 30.0) -> bool:
    """Stop the background broker; return whether one was running."""
    state = service_state()
    if state is None:
        (cloud_dir() / "service.json").unlink(missing_ok=True)
        return False
    background.stop(state.pid, timeout)
    (cloud_dir() / "service.json").unlink(missing_ok=True)
    return True


class Ports(NamedTuple):
    """The broker's MQTT/TLS and WebSocket/TLS ports."""

    port: int
    ws_port: int


def ports_from_environment() -> Ports:
    """Ports from KIT_BROKER_PORT / KIT_BROKER_WS_PORT (so `kit demo` and tests never collide
    with a student's own cloud); the defaults otherwise."""
    ports = []
    for variable, default in (
        ("KIT_BROKER_PORT", DEFAULT_PORT),
        ("KIT_BROKER_WS_PORT", DEFAULT_WS_PORT),
    ):
        text = os.environ.get(variable, "")
        port = read_port(text) if text else default
        if port is None:
            raise CloudError(
                f"{variable} must be a port number from 1 to 65535 (it is {text!r}). Fix or "
                f"unset it (`unset {variable}`) and try again."
            )
        ports.append(port)
    return Ports(*ports)


def require_service() -> ServiceState:
    state = service_state()
    if state is None:
        raise BrokerNotRunningError("The local cloud is not running. Start it with `kit cloud up`.")
    return state


def main(argv: Sequence[str] | None = None) -> int:
    """Run the local cloud in the foreground; a KitError is one line on stderr."""
    parser = arguments.Parser(prog="python -m kit.cloud.service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=arguments.port_or_any, default=MQTT_TLS_PORT)
    parser.add_argument("--ws-port", type=arguments.port_or_any, default=WEBSOCKET_TLS_PORT)
    parser.add_argument("--broker-host", type=arguments.host_name, help="the name boards use")
    parser.add_argument(
        "--keep-days", type=arguments.positive_number("days", "30", 100_000), default=30.0
    )
    try:
        args = parser.parse_args(argv)
        run_service(args.host, args.port, args.ws_port, args.broker_host, args.keep_days)
    except KitError as error:
        print(f"{error.title}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
