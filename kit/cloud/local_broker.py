"""The local cloud's broker running in a thread of this process (tests, scripts, the service).

`LocalBroker(options, ca, database).start()` serves MQTT over TLS and over WebSocket/TLS with
the local CA's server certificate, and says where it listens; `stop()` waits until the recorder
has written everything the broker acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
from pathlib import Path

from kit.cloud.broker import BrokerSettings, serve
from kit.cloud.local_ca import LocalCA
from kit.cloud.options import LOOPBACK, LocalOptions
from kit.errors import CloudError, PortInUseError


def host_names() -> list[str]:
    """The names a board on the LAN may use for this computer (the broker certificate's SAN)."""
    host = socket.gethostname()
    names = {"localhost", "127.0.0.1", host, f"{host.split('.')[0]}.local"}
    with contextlib.suppress(OSError):
        names.add(socket.getfqdn())
    return sorted(n for n in names if n)


def default_broker_host(options: LocalOptions) -> str:
    """The DNS name boards use (the board's TLS checks names, not addresses)."""
    if options.broker_host:
        return options.broker_host
    if options.host in LOOPBACK:
        return "localhost"
    return f"{socket.gethostname().split('.')[0]}.local"


class LocalBroker:
    """The broker in a background thread; also a context manager."""

    def __init__(self, options: LocalOptions, ca: LocalCA, database: Path) -> None:
        self.options, self.ca, self.database = options, ca, database
        self.broker_host = default_broker_host(options)
        self.ports: dict[str, int] = {}  # "default" and "ws": where it listens once started
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and "default" in self.ports

    def settings(self) -> BrokerSettings:
        """The broker's settings: the options, with the CA's files and the database."""
        cert_file, key_file = self.ca.server_identity(host_names())
        options = self.options
        return BrokerSettings(
            options.host,
            options.port,
            options.ws_port,
            self.ca.folder / "ca.pem",
            cert_file,
            key_file,
            self.database,
            keep_days=options.keep_days,
            connect_timeout=options.connect_timeout,
            session_expiry=options.session_expiry,
            recorder_queue=options.recorder_queue,
        )

    def start(self, timeout: float = 20.0) -> LocalBroker:
        """Start serving in a background thread; CloudError if it cannot."""
        settings = self.settings()
        check_ports_free(self.options.host, self.options.listening_ports)
        ready = threading.Event()
        failure: list[BaseException] = []

        def listening(ports: dict[str, int]) -> None:
            self.ports = ports
            ready.set()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop, self._stop = loop, asyncio.Event()
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
        if "default" not in self.ports:
            raise CloudError("The local broker did not start in time; see the log.")
        return self

    def stop(self) -> None:
        """Stop serving; returns once the recorder has written what it held."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=60)
        self._thread = None
        self.ports = {}

    def __enter__(self) -> LocalBroker:
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
