"""MQTT peers for cloud tests: paho clients with a device's or the observer's identity."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from helpers import csr_pem, new_key

from kit import certs


@dataclass
class DeviceFiles:
    """A device's key (made by the test, standing in for the chip) and its certificate files."""

    name: str
    key_file: Path
    cert_file: Path
    ca_file: Path
    csr: certs.Csr


def make_device(folder: Path, name: str, cloud) -> DeviceFiles:
    """A chip-like CSR for `name`, registered in `cloud`, with files a client can use."""
    key = new_key()
    csr = certs.load_csr(csr_pem(name, key=key))
    registration = cloud.register(csr)
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / f"{name}.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file, ca_file = folder / f"{name}.pem", folder / "ca.pem"
    cert_file.write_text(registration.certificate_pem)
    ca_file.write_text(registration.ca_pem)
    return DeviceFiles(name, key_file, cert_file, ca_file, csr)


@dataclass
class Peer:
    """A connected (or refused) paho client, with what happened to it."""

    client: mqtt.Client
    connack: object = None
    disconnected: threading.Event = field(default_factory=threading.Event)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)
    session_present: bool = False

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def wait_for(self, count: int, timeout: float = 5) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    host: str,
    port: int,
    client_id: str,
    cert: Path | None,
    key: Path | None,
    ca: Path,
    transport: str = "tcp",
    timeout: float = 5,
    clean: bool = True,
    will: tuple[str, bytes, int] | None = None,
) -> Peer:
    """Connect over TLS (or WebSocket over TLS) and wait for the broker's answer.

    `clean` is MQTT's clean-session flag; `will` is (topic, payload, qos)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        transport=transport,
        clean_session=clean,
    )
    if will is not None:
        client.will_set(*will)
    client.tls_set(
        ca_certs=str(ca), certfile=str(cert) if cert else None, keyfile=str(key) if key else None
    )
    peer = Peer(client)

    def on_connect(c, u, flags, rc, p) -> None:
        peer.session_present = flags.session_present
        peer.connack = rc

    client.on_connect = on_connect
    client.on_disconnect = lambda c, u, f, rc, p: peer.disconnected.set()
    client.on_message = lambda c, u, m: peer.received.append((m.topic, m.payload))
    client.on_subscribe = lambda c, u, mid, rcs, p: peer.subscribed.set()
    client.reconnect_delay_set(60, 60)  # a test decides itself when to reconnect
    try:
        client.connect(host, port, keepalive=30)
    except OSError:
        peer.disconnected.set()
        return peer
    client.loop_start()
    deadline = time.monotonic() + timeout
    while peer.connack is None and not peer.disconnected.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    return peer
