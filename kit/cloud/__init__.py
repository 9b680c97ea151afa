"""Clouds that register devices: the embedded local cloud (default) and AWS IoT Core.

Both implement `Cloud` and return the same `Registration`; registering also writes the device
record (kit.devices) that the later steps read. A remote classroom service can implement the
same interface later.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kit.certs import Csr, load_certificate, matches
from kit.cloud.store import Message
from kit.errors import KeyMismatchError
from kit.places import write_private
from kit.trust import amazon_root_ca

__all__ = ["Cloud", "ObserverIdentity", "Registration", "amazon_root_ca", "open_cloud"]


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
    # "websockets" where only MQTT over WebSocket is open to observers
    transport: Literal["tcp", "websockets"] = "tcp"
    # Where the observer keeps what it sees, when the cloud records nothing for it (AWS):
    # the history the next session backfills from.
    record_to: Path | None = None


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

    def tidy_up(self) -> None:
        """Remove what the kit made for devices in general once no device uses it (on AWS, the
        device policy); nothing to do where there is no such thing."""
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


def open_cloud(
    name: str = "local", *, profile: str | None = None, region: str | None = None
) -> Cloud:
    """The cloud called `name` ("local" or "aws")."""
    if name == "local":
        from kit.cloud.local import LocalCloud

        return LocalCloud()
    if name == "aws":
        from kit.cloud.aws import AwsCloud

        return AwsCloud(profile=profile, region=region)
    from kit.errors import CloudError

    raise CloudError(f"Unknown cloud '{name}': use 'local' or 'aws'.")
