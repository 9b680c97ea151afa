"""Clouds that register devices: the embedded local cloud (default) and AWS IoT Core.

Both implement `Cloud` and return the same `Registration`. A cloud changes nothing on this
computer: the device record and the current device are the steps layer's (kit.steps). Callers
never ask which cloud they have: status, presence, history and teardown are part of the
interface, so a third backend (a class server) drops in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kit.certs import Csr, load_certificate, matches
from kit.cloud.store import Message, Presence
from kit.errors import KeyMismatchError
from kit.places import write_private
from kit.trust import amazon_roots

if TYPE_CHECKING:  # a name for type checking only: the options belong to the local cloud
    from kit.cloud.options import LocalOptions

__all__ = [
    "Cloud",
    "CloudStatus",
    "ObserverIdentity",
    "Presence",
    "Registration",
    "amazon_roots",
    "open_cloud",
]


@dataclass(frozen=True)
class Registration:
    """What registering a CSR gives back: everything the device needs to connect."""

    thing: str
    certificate_pem: str
    certificate_id: str
    broker_host: str
    broker_port: int
    ca_pem: str  # the CA that signs the broker's certificate
    cloud: str  # "local" or "aws"
    created: bool = True  # False when the CSR was registered before and this is that registration

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Copy certificate.pem and ca.pem into `folder`."""
        return (
            write_private(folder / "certificate.pem", self.certificate_pem),
            write_private(folder / "ca.pem", self.ca_pem),
        )


@dataclass(frozen=True)
class ObserverIdentity:
    """How a notebook or dashboard connects to watch devices (never a device's identity)."""

    host: str
    port: int  # MQTT over TLS
    ws_port: int  # MQTT over WebSocket over TLS
    ca_file: Path
    cert_file: Path | None  # the observer certificate (local); None where a signed URL is used
    key_file: Path | None
    client_id_prefix: str
    ws_path: str = "/mqtt"  # on AWS: the SigV4-signed path
    # "websockets" where only MQTT over WebSocket is open to observers; "events" for the class
    # server's Server-Sent Events (host is then its address, ca_file its pinned certificate)
    transport: Literal["tcp", "websockets", "events"] = "tcp"
    # Where the observer keeps what it sees, when the cloud records nothing for it (AWS):
    # the history the next session backfills from.
    record_to: Path | None = None
    token: str = field(default="", repr=False)  # the class server's bearer token ("events")


@dataclass(frozen=True)
class CloudStatus:
    """Whether the cloud can be reached now, in a sentence, and what to do when it cannot."""

    reachable: bool
    summary: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.summary} {self.fix}".strip()


class Cloud(ABC):
    """A place that registers devices and runs the broker they talk to."""

    name: str

    @abstractmethod
    def _register(self, csr: Csr) -> Registration:
        """Create (or find) the thing and its certificate; roll back on failure."""

    @abstractmethod
    def unregister(self, thing: str) -> None:
        """Detach, deactivate and delete the thing's certificates, then the thing."""

    @abstractmethod
    def things(self) -> list[str]:
        """The names of the registered things."""

    @abstractmethod
    def observer(self) -> ObserverIdentity:
        """How to watch every device and send LED commands (never a device's identity)."""

    @abstractmethod
    def history(self, thing: str, **query: Any) -> list[Message]:
        """What the cloud (or the kit's observer, where the cloud keeps nothing) recorded of
        `thing`; `query` as for Store.messages (since, until, latest, topic_suffix)."""

    @abstractmethod
    def presence(self, thing: str) -> Presence:
        """Whether `thing` is connected now and when it was last seen, from the lifecycle
        events the broker publishes (on AWS: as the kit's observer recorded them)."""

    @abstractmethod
    def status(self) -> CloudStatus:
        """Whether the cloud can be reached, and if not, how to start or reach it."""

    def ensure_running(self, progress: Callable[[str], None] = lambda _: None) -> CloudStatus:
        """Start what the kit runs for this cloud, if anything; then its status."""
        return self.status()

    def made_by_kit(self) -> list[str]:
        """The things the kit registered here (what `teardown` removes)."""
        return self.things()

    def teardown(self, progress: Callable[[str], None] = lambda _: None) -> list[str]:
        """Remove every thing the kit registered and what they shared; return their names."""
        removed = []
        for thing in self.made_by_kit():
            self.unregister(thing)
            progress(f"Removed {thing}.")
            removed.append(thing)
        self._tidy_up()
        return removed

    def _tidy_up(self) -> None:
        """Remove what the kit made for devices in general (on AWS, the device policy)."""
        return None  # the local cloud keeps nothing shared between devices

    def register(self, csr: Csr) -> Registration:
        """Register a CSR and check the certificate carries its key (so the chip can use it).

        Nothing on this computer changes: the device record is the steps layer's (kit.steps).
        """
        registration = self._register(csr)
        if not matches(csr, load_certificate(registration.certificate_pem)):
            raise KeyMismatchError(
                f"The certificate {self.name} returned for {registration.thing} does not carry the "
                "key of your chip, so the board could never use it. Nothing was saved; tell the "
                "instructor (the cloud may be misconfigured)."
            )
        return registration

    def record_extras(self) -> dict[str, str]:
        """What a device record keeps about this cloud beyond its name (AWS: region, profile)."""
        return {}

    def files_page(self) -> str:
        """A page where the student can download a device's files again (the class site's
        My devices), or "" where the cloud has none."""
        return ""


def open_cloud(
    name: str = "local",
    *,
    profile: str | None = None,
    region: str | None = None,
    local: LocalOptions | None = None,
) -> Cloud:
    """The cloud called `name` ("local", "aws", or "class": the class server this computer
    logged in to); the local one with the broker `local` describes, when the kit starts it."""
    if name == "local":
        from kit.cloud.local import LocalCloud

        return LocalCloud(options=local)
    if name == "aws":
        from kit.cloud.aws import AwsCloud

        return AwsCloud(profile=profile, region=region)
    if name == "class":
        from kit.cloud.class_cloud import ClassCloud

        return ClassCloud()
    from kit.errors import CloudError

    raise CloudError(f"Unknown cloud '{name}': use 'local', 'aws' or 'class'.")
