"""The local cloud's broker running in a thread of this process (tests, scripts, the service).

`LocalBroker(options, ca, database).start()` serves MQTT over TLS and over WebSocket/TLS with
the local CA's server certificate, and says where it listens; `stop()` waits until the recorder
has written everything the broker acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from kit import ports
from kit.cloud.broker import PORT_FIX, PORT_HOLDER, BrokerSettings, serve
from kit.cloud.local_ca import LocalCA
from kit.cloud.options import LOOPBACK, LocalOptions
from kit.errors import CloudError, KitError

SCUTIL_TIMEOUT = 2.0  # seconds: scutil answers at once, unless configd is stuck
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # one DNS label


@dataclass(frozen=True)
class LocalName:
    """This computer's name on the LAN (mDNS: <name>.local), and why it may be wrong."""

    name: str
    doubt: str = ""  # what is uncertain about `name`, as a sentence; "" when the system said

    def warning(self, option: str = "--broker-host") -> str:
        """What to tell a person who relies on the name ("" when it is sure): the doubt, and
        the option that sets the name instead."""
        if not self.doubt:
            return ""
        return (
            f"{self.doubt} If boards (or laptops) cannot reach {self.name}, give this "
            f"computer's name with {option}."
        )


def local_name(platform: str = sys.platform) -> LocalName:
    """This computer's .local name: macOS's Bonjour name, elsewhere the host name's first label."""
    host = socket.gethostname().split(".")[0]
    guessed = f"{host}.local"
    if platform == "darwin":
        # macOS answers mDNS for its Bonjour name (System Settings > General > Sharing >
        # Local hostname), which need not be the host name DHCP or a network gave it.
        bonjour = _bonjour_name()
        if bonjour:
            return LocalName(f"{bonjour}.local")
        return LocalName(
            guessed,
            "macOS did not say its Bonjour name (`scutil --get LocalHostName`), so the kit "
            f"guessed {guessed} from the host name; System Settings > General > Sharing shows "
            "the right one under Local hostname.",
        )
    if not _LABEL.fullmatch(host) or host.lower() == "localhost":
        return LocalName(
            guessed,
            f"This computer's host name ({host!r}) is not one other computers can look up "
            "on the network.",
        )
    return LocalName(guessed)


def _bonjour_name() -> str:
    """macOS's Bonjour name without .local, or "" if scutil does not say one."""
    # PATH first (a test puts a stand-in there); a notebook started from the Dock may not
    # have /usr/sbin on its PATH.
    scutil = shutil.which("scutil") or "/usr/sbin/scutil"
    try:
        done = subprocess.run(
            [scutil, "--get", "LocalHostName"],
            capture_output=True,
            text=True,
            timeout=SCUTIL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    name = done.stdout.strip()
    # Unset, it prints "LocalHostName: not set" and fails.
    return name if done.returncode == 0 and _LABEL.fullmatch(name) else ""


def host_names() -> list[str]:
    """The names a board on the LAN may use for this computer (the broker certificate's SAN)."""
    host = socket.gethostname()
    names = {"localhost", "127.0.0.1", host, f"{host.split('.')[0]}.local", local_name().name}
    with contextlib.suppress(OSError):
        names.add(socket.getfqdn())
    return sorted(n for n in names if n)


def default_broker_host(options: LocalOptions) -> str:
    """The DNS name boards use (the board's TLS checks names, not addresses)."""
    if options.broker_host:
        return options.broker_host
    if options.host in LOOPBACK:
        return "localhost"
    return local_name().name


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
        # The name boards dial must be in the certificate, whatever --broker-host chose.
        cert_file, key_file = self.ca.server_identity([*host_names(), self.broker_host])
        return BrokerSettings.of(
            self.options,
            ca_file=self.ca.folder / "ca.pem",
            cert_file=cert_file,
            key_file=key_file,
            database=self.database,
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
            if isinstance(failure[0], KitError):  # it says what to do (a port in use)
                raise failure[0]
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


def check_ports_free(host: str, ports_wanted: list[int]) -> None:
    """Stop with a message naming the port if another program has it."""
    for port in ports_wanted:
        ports.check_free(host, port, holder=PORT_HOLDER, fix=PORT_FIX)
