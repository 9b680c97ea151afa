"""The embedded local cloud's registry: a CA, and things with their certificates in the store.

It is the default cloud, so the course runs without an AWS account. Three parts, one job each:
this registry (`LocalCloud`), the broker (`kit.cloud.local_broker`, in a thread of whichever
process runs it) and the background service that outlives notebook kernels
(`kit.cloud.service`, which alone owns KIT_HOME/cloud/service.json). `with LocalCloud() as
cloud:` also runs a broker in this process, for tests and scripts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.certs import Csr, load_certificate, validate_device_name
from kit.cloud import Cloud, CloudStatus, ObserverIdentity, Registration
from kit.cloud.local_broker import LocalBroker, default_broker_host
from kit.cloud.local_ca import OBSERVER_CN, LocalCA, certificate_id
from kit.cloud.options import LocalOptions
from kit.cloud.policy import OBSERVER_ID_PREFIX
from kit.cloud.store import DEVICE, OBSERVER, Message, Presence, Principal, Store
from kit.errors import CloudError, ThingTakenError
from kit.places import kit_home

if TYPE_CHECKING:  # the service sits above the registry: a name for type checking only
    from kit.cloud.service import ServiceState


def cloud_dir() -> Path:
    return kit_home() / "cloud"


class LocalCloud(Cloud):
    """The local cloud; also a context manager that runs its broker in a thread."""

    name = "local"

    def __init__(self, *, options: LocalOptions | None = None, **changes: Any) -> None:
        """The broker's options, for `start()` and the service: `options` (default
        `LocalOptions()`) with any of its fields changed by name, as in
        `LocalCloud(port=0, ws_port=0)`. Devices are pointed at the running broker, or at these
        ports when none runs."""
        self.options = replace(options or LocalOptions(), **changes)
        self.ca = LocalCA(cloud_dir() / "ca")
        self._database = cloud_dir() / "cloud.db"
        self._stores = threading.local()
        self._stores.store = Store(self._database)  # now: a damaged database is reported at once
        self.broker: LocalBroker | None = None  # a broker of this process, once started

    @property
    def store(self) -> Store:
        """This thread's connection to the cloud database: an SQLite connection stays in the
        thread that opened it, and a web server calls the cloud from many threads."""
        store: Store | None = getattr(self._stores, "store", None)
        if store is None:
            store = self._stores.store = Store(self._database)
        return store

    # Where devices connect: this process's broker, else the service, else the options

    def _running(self) -> tuple[str, int, int] | None:
        """(broker host, MQTT/TLS port, WebSocket/TLS port) of a running broker, or None."""
        if self.broker is not None and self.broker.running:
            ports = self.broker.ports
            return self.broker.broker_host, ports["default"], ports["ws"]
        running = self._service()
        if running is not None:
            host = self.options.broker_host or running.broker_host
            return host, running.port, running.ws_port
        return None

    def _where(self) -> tuple[str, int, int]:
        """Where devices connect: the running broker, else where the options would put it."""
        return self._running() or (
            default_broker_host(self.options),
            self.options.port,
            self.options.ws_port,
        )

    @staticmethod
    def _service() -> ServiceState | None:
        """The running background service's state, or None."""
        from kit.cloud.service import service_state  # the service sits above: asked only

        return service_state()

    @property
    def broker_host(self) -> str:
        """The DNS name devices use (the board's TLS checks names, not addresses)."""
        return self._where()[0]

    @property
    def broker_port(self) -> int:
        return self._where()[1]

    @property
    def ws_broker_port(self) -> int:
        return self._where()[2]

    # Registration

    def _register(self, csr: Csr) -> Registration:
        thing = validate_device_name(csr.common_name).name
        # One transaction: two registrations of a name at once must not both pass the check.
        with self.store.transaction():
            known = self.store.certificates_of(thing)
            for cert_id, pem, status in known:
                if (
                    load_certificate(pem).public_key_der == csr.public_key_der
                    and status == "ACTIVE"
                ):
                    return self._registration(thing, pem, cert_id, created=False)
            if known:
                raise ThingTakenError(
                    f"The name '{thing}' is already registered with another key (another board, "
                    "or a new key made in the same slot). Choose another device name, or remove "
                    f"the old registration first: course.register(replace=True) in notebook 02, "
                    f"or `kit unregister {thing}` in a terminal."
                )
            pem = self.ca.sign_csr(csr)
            cert_id = certificate_id(load_certificate(pem).der)
            self.store.add_thing(thing, Principal(cert_id, DEVICE, thing, "", "ACTIVE"), pem)
        return self._registration(thing, pem, cert_id, created=True)

    def _registration(self, thing: str, pem: str, cert_id: str, created: bool) -> Registration:
        host, port, _ = self._where()
        return Registration(thing, pem, cert_id, host, port, self.ca.pem, self.name, created)

    def unregister(self, thing: str) -> None:
        if not self.store.remove_thing(thing):
            raise CloudError(
                f"There is no thing called '{thing}' in the local cloud. Notebook 05's "
                "course.look_inside() shows the current one; `kit things` lists them."
            )

    def things(self) -> list[str]:
        return self.store.things()

    def messages(self, thing: str | None = None, **query: Any) -> list[Message]:
        """What the recorder kept of one thing or all (see Store.messages for the query)."""
        return self.store.messages(thing, **query)

    def history(self, thing: str, **query: Any) -> list[Message]:
        """What the broker's recorder kept of `thing`."""
        return self.store.messages(thing, **query)

    def presence(self, thing: str) -> Presence:
        """From the lifecycle events the broker published, as the recorder kept them."""
        return self.store.presence(thing)

    def status(self) -> CloudStatus:
        """Running (in this process or as the service), or how to start it."""
        running = self._running()
        if running is not None:
            host, port, ws_port = running
            return CloudStatus(
                True,
                f"The local cloud runs on {host}:{port} (MQTT over TLS; WebSocket over TLS "
                f"on port {ws_port}).",
            )
        return CloudStatus(
            False,
            "The local cloud is not running.",
            "Start it: run `course.start()` in notebook 00, or `kit cloud up` in a terminal.",
        )

    def ensure_running(self, progress: Callable[[str], None] = lambda _: None) -> CloudStatus:
        """Start the background service unless a broker already runs."""
        if not self.status().reachable:
            from kit.cloud.service import start_service  # the service sits above: started only

            start_service(self.options, progress=progress)
        return self.status()

    def observer(self) -> ObserverIdentity:
        """The identity notebooks use to watch all devices and send LED commands."""
        cert_file, key_file = self._observer_files()
        _, port, ws_port = self._where()
        # Observers run on this computer (their key is here): by the loopback name the broker's
        # certificate carries, which resolves even where <host>.local for the boards does not.
        return ObserverIdentity(
            "localhost",
            port,
            ws_port,
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

    # A broker in this process

    def start(self, timeout: float = 20.0) -> LocalCloud:
        """Run the broker in a background thread of this process."""
        self._observer_files()
        self.broker = LocalBroker(self.options, self.ca, self.store_path).start(timeout)
        return self

    @property
    def store_path(self) -> Path:
        return cloud_dir() / "cloud.db"

    def stop(self) -> None:
        """Stop a broker started with start()."""
        if self.broker is not None:
            self.broker.stop()
        self.broker = None

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
