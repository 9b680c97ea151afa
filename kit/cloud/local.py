"""The embedded local cloud: a CA, a registry, an MQTT broker and a recorder on this computer.

It is the default cloud, so the course runs without an AWS account. `with LocalCloud() as
cloud:` runs the broker in this process (tests, scripts); `kit cloud up` runs it as a background
service that outlives notebook kernels, with its pid, ports and log in KIT_HOME/cloud/.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kit import background
from kit.certs import Csr, load_certificate, validate_device_name
from kit.cloud import Cloud, ObserverIdentity, Registration
from kit.cloud.broker import BrokerSettings, serve
from kit.cloud.local_ca import OBSERVER_CN, LocalCA, certificate_id
from kit.cloud.policy import CONNECT_TIMEOUT, OBSERVER_ID_PREFIX, SESSION_EXPIRY
from kit.cloud.recorder import QUEUE_SIZE
from kit.cloud.store import DEVICE, OBSERVER, Message, Principal, Store
from kit.errors import (
    BrokerNotRunningError,
    CloudError,
    DamagedFileError,
    PortInUseError,
    ThingTakenError,
)
from kit.places import kit_home, private_dir, read_json, write_private
from kit.ports import MQTT_TLS_PORT, WEBSOCKET_TLS_PORT, read_port

DEFAULT_PORT = MQTT_TLS_PORT
DEFAULT_WS_PORT = WEBSOCKET_TLS_PORT
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cloud_dir() -> Path:
    return kit_home() / "cloud"


def host_names() -> list[str]:
    """The names a board on the LAN may use for this computer (the broker certificate's SAN)."""
    host = socket.gethostname()
    names = {"localhost", "127.0.0.1", host, f"{host.split('.')[0]}.local"}
    with contextlib.suppress(OSError):
        names.add(socket.getfqdn())
    return sorted(n for n in names if n)


@dataclass(frozen=True)
class ServiceState:
    """A running broker service, as other processes find it."""

    pid: int
    host: str
    port: int
    ws_port: int
    broker_host: str


class LocalCloud(Cloud):
    """The local cloud; also a context manager that runs its broker in a thread."""

    name = "local"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        ws_port: int = DEFAULT_WS_PORT,
        broker_host: str | None = None,
        keep_days: float = 30,
        connect_timeout: float = CONNECT_TIMEOUT,
        session_expiry: float = SESSION_EXPIRY,
        recorder_queue: int = QUEUE_SIZE,
    ) -> None:
        self.host, self.port, self.ws_port = host, port, ws_port
        self._broker_host = broker_host
        self._limits = {
            "keep_days": keep_days,
            "connect_timeout": connect_timeout,
            "session_expiry": session_expiry,
            "recorder_queue": recorder_queue,
        }
        self.ca = LocalCA(cloud_dir() / "ca")
        self.store = Store(cloud_dir() / "cloud.db")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._settings: BrokerSettings | None = None

    # Where devices connect

    @property
    def broker_host(self) -> str:
        """The DNS name devices use (the board's TLS checks names, not addresses)."""
        if self._broker_host:
            return self._broker_host
        running = service_state()
        if self._settings is None and running is not None:
            return running.broker_host
        return (
            "localhost" if self.host in LOOPBACK else f"{socket.gethostname().split('.')[0]}.local"
        )

    @property
    def broker_port(self) -> int:
        if self._settings is not None and "default" in self._settings.ports:
            return self._settings.ports["default"]
        running = service_state()
        return running.port if running is not None else self.port

    @property
    def ws_broker_port(self) -> int:
        if self._settings is not None and "ws" in self._settings.ports:
            return self._settings.ports["ws"]
        running = service_state()
        return running.ws_port if running is not None else self.ws_port

    # Registration

    def _register(self, csr: Csr) -> Registration:
        thing = validate_device_name(csr.common_name).name
        with self.store.transaction() as db:
            for cert_id, pem, status in self.store.certificates_of(thing):
                if (
                    load_certificate(pem).public_key_der == csr.public_key_der
                    and status == "ACTIVE"
                ):
                    return self._registration(thing, pem, cert_id, created=False)
            if self.store.certificates_of(thing):
                raise ThingTakenError(
                    f"The name '{thing}' is already registered with another key (another board, "
                    "or a new key made in the same slot). Choose another device name, or remove "
                    f"the old registration first with `kit unregister {thing}`."
                )
            pem = self.ca.sign_csr(csr)
            cert_id = certificate_id(load_certificate(pem).der)
            db.execute(
                "INSERT OR IGNORE INTO things (name, created) VALUES (?, ?)", (thing, time.time())
            )
            self.store.add_principal(Principal(cert_id, DEVICE, thing, "", "ACTIVE"), pem)
        return self._registration(thing, pem, cert_id, created=True)

    def _registration(self, thing: str, pem: str, cert_id: str, created: bool) -> Registration:
        return Registration(
            thing, pem, cert_id, self.broker_host, self.broker_port, self.ca.pem, self.name, created
        )

    def unregister(self, thing: str) -> None:
        with self.store.transaction() as db:
            known = db.execute("SELECT 1 FROM things WHERE name = ?", (thing,)).fetchone()
            if not known:
                raise CloudError(
                    f"There is no thing called '{thing}' in the local cloud. "
                    "`kit things` lists them."
                )
            # The broker notices within a fraction of a second and closes its connections.
            db.execute("DELETE FROM principals WHERE role = 'device' AND name = ?", (thing,))
            db.execute("DELETE FROM things WHERE name = ?", (thing,))

    def things(self) -> list[str]:
        return self.store.things()

    def messages(self, thing: str | None = None, **query: Any) -> list[Message]:
        """What the recorder kept (see Store.messages for the query)."""
        return self.store.messages(thing, **query)

    def history(self, thing: str, **query: Any) -> list[Message]:
        """What the broker's recorder kept of `thing`."""
        return self.store.messages(thing, **query)

    def observer(self) -> ObserverIdentity:
        """The identity notebooks use to watch all devices and send LED commands."""
        cert_file, key_file = self._observer_files()
        return ObserverIdentity(
            self.broker_host,
            self.broker_port,
            self.ws_broker_port,
            self.ca.folder / "ca.pem",
            cert_file,
            key_file,
            OBSERVER_ID_PREFIX,
        )

    def _observer_files(self) -> tuple[Path, Path]:
        """The observer's certificate and key, registered as an observer principal."""
        cert_file, key_file = self.ca.observer_identity()
        pem = cert_file.read_text(encoding="ascii")
        fingerprint = certificate_id(load_certificate(pem).der)
        if self.store.principal(fingerprint) is None:
            with self.store.transaction():
                self.store.add_principal(
                    Principal(fingerprint, OBSERVER, OBSERVER_CN, "", "ACTIVE"), pem
                )
        return cert_file, key_file

    # Running the broker in this process

    def start(self, timeout: float = 20.0) -> LocalCloud:
        """Start the broker in a background thread of this process."""
        cert_file, key_file = self.ca.server_identity(host_names())
        self._observer_files()
        self._settings = BrokerSettings(
            self.host,
            self.port,
            self.ws_port,
            self.ca.folder / "ca.pem",
            cert_file,
            key_file,
            cloud_dir() / "cloud.db",
            **self._limits,
        )
        check_ports_free(self.host, [p for p in (self.port, self.ws_port) if p])
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._stop = asyncio.Event()
            started = asyncio.Event()

            async def main() -> None:
                task = asyncio.ensure_future(serve(self._settings, started, self._stop))
                await asyncio.wait(
                    [task, asyncio.ensure_future(started.wait())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                ready.set()
                await task

            try:
                loop.run_until_complete(main())
            except BaseException as error:
                failure.append(error)
                ready.set()
            finally:
                # Let the per-connection tasks finish before the loop closes.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="kit-broker")
        self._thread.start()
        ready.wait(timeout)
        if failure:
            raise CloudError(f"The local broker could not start: {failure[0]}")
        if "default" not in self._settings.ports:
            raise CloudError("The local broker did not start in time; see the log.")
        return self

    def stop(self) -> None:
        """Stop a broker started with start()."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=60)  # the recorder writes what it still holds
        self._thread = None

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_ports_free(host: str, ports: list[int]) -> None:
    """Stop with a message naming the port if another program has it."""
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                if error.errno in (errno.EADDRINUSE, errno.EACCES):
                    raise PortInUseError(
                        f"Port {port} on {host} is already in use (another broker, such as "
                        "Mosquitto, or a second kit cloud?). Stop that program, or choose "
                        "another port with --port (and --ws-port)."
                    ) from None
                raise


# The background service (kit cloud up | down | status)


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


def ports_from_environment() -> dict[str, int]:
    """Ports from KIT_BROKER_PORT / KIT_BROKER_WS_PORT (so `kit demo` and tests never collide
    with a student's own cloud); the defaults otherwise."""
    ports = {}
    for name, variable, default in (
        ("port", "KIT_BROKER_PORT", DEFAULT_PORT),
        ("ws_port", "KIT_BROKER_WS_PORT", DEFAULT_WS_PORT),
    ):
        text = os.environ.get(variable, "")
        port = read_port(text) if text else default
        if port is None:
            raise CloudError(
                f"{variable} must be a port number from 1 to 65535 (it is {text!r}). Fix or "
                f"unset it (`unset {variable}`) and try again."
            )
        ports[name] = port
    return ports


def require_service() -> ServiceState:
    state = service_state()
    if state is None:
        raise BrokerNotRunningError("The local cloud is not running. Start it with `kit cloud up`.")
    return state
