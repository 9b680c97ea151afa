"""The embedded local cloud: a CA, a registry, an MQTT broker and a recorder on this computer.

It is the default cloud, so the course runs without an AWS account. `with LocalCloud() as
cloud:` runs the broker in this process (tests, scripts); `kit cloud up` runs it as a background
service that outlives notebook kernels (kit.cloud.service), with its pid, ports and log in
KIT_HOME/cloud/.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
import time
from pathlib import Path
from typing import Any

from kit.certs import Csr, load_certificate, validate_device_name
from kit.cloud import Cloud, ObserverIdentity, Registration
from kit.cloud.broker import BrokerSettings, serve
from kit.cloud.local_ca import OBSERVER_CN, LocalCA, certificate_id
from kit.cloud.policy import CONNECT_TIMEOUT, OBSERVER_ID_PREFIX, SESSION_EXPIRY
from kit.cloud.recorder import QUEUE_SIZE
from kit.cloud.store import DEVICE, OBSERVER, Message, Principal, Store
from kit.errors import (
    CloudError,
    PortInUseError,
    ThingTakenError,
)
from kit.places import kit_home
from kit.ports import MQTT_TLS_PORT, WEBSOCKET_TLS_PORT

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
        self.keep_days, self.connect_timeout = keep_days, connect_timeout
        self.session_expiry, self.recorder_queue = session_expiry, recorder_queue
        self.ca = LocalCA(cloud_dir() / "ca")
        self.store = Store(cloud_dir() / "cloud.db")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ports: dict[str, int] = {}  # where the broker of this process listens

    # Where devices connect

    @property
    def broker_host(self) -> str:
        """The DNS name devices use (the board's TLS checks names, not addresses)."""
        if self._broker_host:
            return self._broker_host
        from kit.cloud.service import service_state  # the service sits above: asked only

        running = service_state()  # when no broker runs in this process
        if not self._ports and running is not None:
            return running.broker_host
        return (
            "localhost" if self.host in LOOPBACK else f"{socket.gethostname().split('.')[0]}.local"
        )

    @property
    def broker_port(self) -> int:
        if "default" in self._ports:  # a broker of this process listens there
            return self._ports["default"]
        from kit.cloud.service import service_state  # the service sits above: asked only

        running = service_state()  # when no broker runs in this process
        return running.port if running is not None else self.port

    @property
    def ws_broker_port(self) -> int:
        if "ws" in self._ports:
            return self._ports["ws"]
        from kit.cloud.service import service_state  # the service sits above: asked only

        running = service_state()  # when no broker runs in this process
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
        settings = BrokerSettings(
            self.host,
            self.port,
            self.ws_port,
            self.ca.folder / "ca.pem",
            cert_file,
            key_file,
            cloud_dir() / "cloud.db",
            keep_days=self.keep_days,
            connect_timeout=self.connect_timeout,
            session_expiry=self.session_expiry,
            recorder_queue=self.recorder_queue,
        )
        check_ports_free(self.host, [p for p in (self.port, self.ws_port) if p])
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._stop = asyncio.Event()

            def listening(ports: dict[str, int]) -> None:
                self._ports = ports
                ready.set()

            try:
                loop.run_until_complete(serve(settings, listening, self._stop))
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
        if "default" not in self._ports:
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
