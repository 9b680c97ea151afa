"""The local broker against AWS IoT Core: one table, one row per policy case.

Each row names what AWS IoT Core does, where AWS says so ("AWS: <page>#<section>" in the IoT
Developer Guide, or "kit choice" / "assumed" where AWS documents nothing), and a check that proves
the local broker does the same over real TLS on 127.0.0.1: paho where it can express the case,
the raw client in mqtt_raw where it cannot. Pages are under
https://docs.aws.amazon.com/iot/latest/developerguide/ unless a full address is given.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mqtt_raw as raw
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from helpers import csr_pem, new_key, private_key_pem
from mqtt_peers import DeviceFiles, Peer, connect, make_device

from kit import certs, errors
from kit.cloud.local import LocalCloud
from kit.cloud.local_ca import certificate_id
from kit.cloud.policy import served_keepalive
from kit.cloud.store import DEVICE, Principal

EXPIRY = 1.0  # seconds a persistent session outlives its connection here (AWS: 1 hour)


class World:
    """A running local cloud and the peers a case needs."""

    def __init__(self, cloud: LocalCloud, folder: Path, other_ca) -> None:
        self.cloud, self.folder, self.other_ca = cloud, folder, other_ca
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_text(cloud.ca.pem)

    def device(self, name: str) -> DeviceFiles:
        return make_device(self.folder, name, self.cloud)

    def paho(self, files: DeviceFiles, client_id: str | None = None, **options) -> Peer:
        return connect(
            "localhost",
            self.cloud.broker_port,
            client_id or files.name,
            files.cert_file,
            files.key_file,
            files.ca_file,
            **options,
        )

    def raw(self, files: DeviceFiles | None, client_id: str | None = None) -> raw.RawClient:
        """A raw client; connected (CONNACK 0 read) when `client_id` is given."""
        client = raw.RawClient(
            "localhost",
            self.cloud.broker_port,
            self.ca_file,
            files.cert_file if files else None,
            files.key_file if files else None,
        )
        if client_id is not None:
            client.send(raw.connect(client_id))
            assert client.connack() == 0
        return client

    def observer(self, client_id: str = "kit-observer-test", subscribe: str = "") -> Peer:
        identity = self.cloud.observer()
        peer = connect(
            "localhost",
            identity.port,
            client_id,
            identity.cert_file,
            identity.key_file,
            identity.ca_file,
        )
        assert peer.accepted
        if subscribe:
            peer.client.subscribe(subscribe, qos=1)
            assert peer.subscribed.wait(5)
        return peer

    def recorded(self, thing: str) -> list:
        time.sleep(0.3)  # the recorder writes off the broker's loop
        return self.cloud.messages(thing)


def closed_soon(peer: Peer, seconds: float = 5) -> bool:
    return peer.disconnected.wait(seconds)


def gone(client: raw.RawClient, seconds: float = 3) -> list[tuple[int, int, bytes]]:
    """What a raw client received before the broker closed it (asserts that it did)."""
    packets = client.packets_until_closed(seconds)
    assert client.closed, "the broker kept the connection open"
    return packets


# Identity and sessions


def wrong_client_id(w: World) -> None:
    a = w.device("dev_a")
    assert not w.paho(a, client_id="dev_b").accepted


def foreign_topic_publish(w: World) -> None:
    a, b = w.device("dev_a"), w.device("dev_b")
    listener = w.paho(b)
    listener.client.subscribe("things/dev_b/led", qos=1)
    assert listener.subscribed.wait(5)
    peer = w.paho(a)
    peer.client.publish("things/dev_b/led", b"99", qos=1)
    assert closed_soon(peer)
    assert listener.wait_for(1, timeout=1) == []


def foreign_subscribe(w: World) -> None:
    peer = w.paho(w.device("dev_a"))
    peer.client.subscribe("things/dev_b/led", qos=1)
    assert closed_soon(peer) and not peer.subscribed.is_set()


def unregistered_certificate(w: World) -> None:
    a, b = w.device("dev_a"), w.device("dev_b")
    w.cloud.unregister("dev_a")
    with w.cloud.store.transaction() as db:
        db.execute("UPDATE principals SET status = 'INACTIVE' WHERE name = 'dev_b'")
    for files in (a, b):
        assert not w.paho(files).accepted
        client = w.raw(files)  # refused once TLS is done: no CONNACK, nothing read
        assert client.packet(2) is None and client.closed


def _handshake_refused(w: World, cert: Path | None, key: Path | None) -> bool:
    context = ssl.create_default_context(cafile=str(w.ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    try:
        plain = socket.create_connection(("localhost", w.cloud.broker_port), timeout=5)
        with context.wrap_socket(plain, server_hostname="localhost") as tls:
            tls.sendall(raw.connect("dev_a"))
            return tls.recv(4) == b""  # TLS 1.3 reports the refused certificate on read
    except (ssl.SSLError, ConnectionError):
        return True


def foreign_ca_certificate(w: World) -> None:
    w.device("dev_a")
    key = new_key()
    (w.folder / "other.key").write_text(private_key_pem(key))
    (w.folder / "other.pem").write_text(w.other_ca.issue(key.public_key(), "dev_a"))
    assert _handshake_refused(w, w.folder / "other.pem", w.folder / "other.key")


def no_certificate(w: World) -> None:
    w.device("dev_a")
    assert _handshake_refused(w, None, None)


def duplicate_client_id(w: World) -> None:
    a = w.device("dev_a")
    watcher = w.observer(subscribe="$aws/events/presence/#")
    first = w.paho(a)
    second = w.paho(a)
    assert second.accepted and closed_soon(first)
    time.sleep(0.3)
    assert not second.disconnected.is_set()
    reasons = [
        json.loads(p).get("disconnectReason") for t, p in watcher.received if "disconnected" in t
    ]
    assert reasons == ["DUPLICATE_CLIENTID"]


def reserved_name_refused(w: World) -> None:
    with pytest.raises(errors.DeviceNameError, match="keeps for its own"):
        w.cloud.register(certs.load_csr(csr_pem("kit-observer")))
    with pytest.raises(errors.DeviceNameError):
        certs.validate_device_name("KIT-observer-2")


def _device_named_observer(w: World) -> DeviceFiles:
    """A device certificate with CN kit-observer in the registry, as an older kit could make."""
    key = new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kit-observer")]))
        .sign(key, hashes.SHA256())
    )
    pem = w.cloud.ca.sign_csr(certs.load_csr(csr.public_bytes(Encoding.PEM)))
    fingerprint = certificate_id(certs.load_certificate(pem).der)
    with w.cloud.store.transaction():
        w.cloud.store.add_principal(
            Principal(fingerprint, DEVICE, "kit-observer", "", "ACTIVE"), pem
        )
    (w.folder / "impostor.key").write_text(private_key_pem(key))
    (w.folder / "impostor.pem").write_text(pem)
    return DeviceFiles(
        "kit-observer", w.folder / "impostor.key", w.folder / "impostor.pem", w.ca_file, None
    )


def observer_rights_from_the_registry(w: World) -> None:
    impostor = _device_named_observer(w)
    assert not w.paho(impostor, client_id="kit-observer-1").accepted
    as_device = w.paho(impostor)  # client id kit-observer = its CN: a device, nothing more
    assert as_device.accepted
    as_device.client.subscribe("things/#", qos=1)
    assert closed_soon(as_device)


def revocation_ends_live_connections(w: World) -> None:
    a = w.device("dev_a")
    watcher = w.observer(subscribe="$aws/events/presence/disconnected/#")
    peer = w.paho(a)
    assert peer.accepted
    w.cloud.unregister("dev_a")
    assert closed_soon(peer, 2)
    events = [json.loads(p) for _, p in watcher.wait_for(1)]
    assert [e["disconnectReason"] for e in events] == ["AUTH_ERROR"]
    assert not w.paho(a).accepted


def observer_revoked(w: World) -> None:
    watcher = w.observer()
    with w.cloud.store.transaction() as db:
        db.execute("UPDATE principals SET status = 'REVOKED' WHERE role = 'observer'")
    assert closed_soon(watcher, 2)


def refused_connect_leaves_session_clean(w: World) -> None:
    a, b = w.device("dev_a"), w.device("dev_b")
    victim = w.paho(a)
    victim.client.subscribe("things/dev_a/led", qos=1)
    assert victim.subscribed.wait(5)
    attacker = w.paho(b, client_id="dev_a", clean=True)
    assert not attacker.accepted
    w.observer().client.publish("things/dev_a/led", b"7", qos=1)
    assert victim.wait_for(1) == [("things/dev_a/led", b"7")]
    assert not victim.disconnected.is_set()


def refused_persistent_connect_evicts_nobody(w: World) -> None:
    a, b = w.device("dev_a"), w.device("dev_b")
    victim = w.paho(a)
    attacker = w.paho(b, client_id="dev_a", clean=False)
    assert not attacker.accepted
    time.sleep(0.3)
    assert not victim.disconnected.is_set()


def subscribed_and_gone(w: World, files: DeviceFiles) -> None:
    """A persistent session subscribed to its LED, whose client then disconnects."""
    first = w.paho(files, clean=False)
    first.client.subscribe(f"things/{files.name}/led", qos=1)
    assert first.subscribed.wait(5)
    first.close()
    time.sleep(0.2)


def persistent_session_resumes(w: World) -> None:
    a = w.device("dev_a")
    subscribed_and_gone(w, a)
    w.observer().client.publish("things/dev_a/led", b"33", qos=1).wait_for_publish(5)
    again = w.paho(a, clean=False)
    assert again.session_present
    assert again.wait_for(1) == [("things/dev_a/led", b"33")]


def persistent_session_expires(w: World) -> None:
    a = w.device("dev_a")
    subscribed_and_gone(w, a)
    time.sleep(EXPIRY + 0.6)
    assert not w.paho(a, clean=False).session_present


def persistent_session_needs_its_certificate(w: World) -> None:
    a = w.device("dev_a")
    subscribed_and_gone(w, a)
    w.cloud.unregister("dev_a")
    again = w.device("dev_a")  # the same name, a new key and certificate
    assert not w.paho(again, clean=False).session_present


def lifecycle_events(w: World) -> None:
    a = w.device("dev_a")
    watcher = w.observer(subscribe="$aws/events/presence/#")
    peer = w.paho(a)
    peer.close()
    events = {t: json.loads(p) for t, p in watcher.wait_for(2)}
    connected = events["$aws/events/presence/connected/dev_a"]
    disconnected = events["$aws/events/presence/disconnected/dev_a"]
    fingerprint = certificate_id(certs.load_certificate(a.cert_file.read_text()).der)
    assert set(connected) == {
        "clientId",
        "timestamp",
        "eventType",
        "sessionIdentifier",
        "principalIdentifier",
        "ipAddress",
        "versionNumber",
    }
    assert connected["principalIdentifier"] == fingerprint and connected["ipAddress"] == "127.0.0.1"
    assert disconnected["clientInitiatedDisconnect"] is True
    assert disconnected["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert "ipAddress" not in disconnected
    assert disconnected["sessionIdentifier"] == connected["sessionIdentifier"]


def connect_failed_event(w: World) -> None:
    a = w.device("dev_a")
    watcher = w.observer(subscribe="$aws/events/presence/#")
    assert not w.paho(a, client_id="dev_z").accepted
    [(topic, payload)] = watcher.wait_for(1)
    assert topic == "$aws/events/presence/connect_failed/dev_z"
    assert json.loads(payload)["connectFailureReason"] == "AUTHORIZATION_FAILED"


def device_cannot_watch_presence(w: World) -> None:
    peer = w.paho(w.device("dev_a"))
    peer.client.subscribe("$aws/events/presence/#", qos=1)
    assert closed_soon(peer)


def device_cannot_forge_presence(w: World) -> None:
    watcher = w.observer(subscribe="$aws/events/presence/#")
    client = w.raw(w.device("dev_a"), "dev_a")
    watcher.received.clear()
    client.send(raw.publish("$aws/events/presence/connected/dev_b", b"{}", qos=1))
    assert not [p for p in gone(client) if p[0] == raw.PUBACK]
    time.sleep(0.3)
    assert not [t for t, _ in watcher.received if t.endswith("dev_b")]


# Messages


def will_on_foreign_topic(w: World) -> None:
    a, b = w.device("dev_a"), w.device("dev_b")
    listener = w.paho(b)
    listener.client.subscribe("things/dev_b/led", qos=1)
    assert listener.subscribed.wait(5)
    assert not w.paho(a, will=("things/dev_b/led", b"100", 1)).accepted
    assert listener.wait_for(1, timeout=1) == []


def will_on_own_topic(w: World) -> None:
    a = w.device("dev_a")
    watcher = w.observer(subscribe="things/dev_a/#")
    vanishing = w.raw(a)
    vanishing.send(raw.connect("dev_a", will=("things/dev_a/status", b"gone", 1, False)))
    assert vanishing.connack() == 0
    vanishing.sock.shutdown(socket.SHUT_RDWR)  # no DISCONNECT: the network just went
    vanishing.close()
    assert watcher.wait_for(1) == [("things/dev_a/status", b"gone")]
    polite = w.paho(a, will=("things/dev_a/status", b"gone again", 1))
    polite.close()  # DISCONNECT: the will is discarded
    time.sleep(0.5)
    assert len(watcher.received) == 1


def retained_will(w: World) -> None:
    client = w.raw(w.device("dev_a"))
    client.send(raw.connect("dev_a", will=("things/dev_a/status", b"x", 1, True)))
    assert client.connack() == 5


def retained_publish(w: World) -> None:
    a = w.device("dev_a")
    client = w.raw(a, "dev_a")
    client.send(raw.publish("things/dev_a/environment", b"{}", qos=1, retain=True))
    assert not [p for p in gone(client) if p[0] == raw.PUBACK]
    late = w.paho(a)
    late.client.subscribe("things/dev_a/#", qos=1)
    assert late.subscribed.wait(5)
    assert late.wait_for(1, timeout=1) == []  # nothing was retained
    assert w.recorded("dev_a") == []


def forbidden_publish_gets_no_puback(w: World) -> None:
    w.device("dev_b")
    client = w.raw(w.device("dev_a"), "dev_a")
    client.send(raw.publish("things/dev_b/led", b"1", qos=1, packet_id=7))
    assert gone(client) == []


def wildcard_in_topic_name(w: World) -> None:
    a = w.device("dev_a")
    for topic in ("things/dev_a/+", "things/dev_a/#"):
        client = w.raw(a, "dev_a")
        client.send(raw.publish(topic, b"1", qos=1))
        client.send(raw.publish("things/dev_a/environment", b"{}", qos=1, packet_id=2))
        assert gone(client) == []


def qos2_publish(w: World) -> None:
    client = w.raw(w.device("dev_a"), "dev_a")
    client.send(raw.publish("things/dev_a/environment", b"{}", qos=2))
    assert gone(client) == []
    assert w.recorded("dev_a") == []


def qos2_subscribe(w: World) -> None:
    client = w.raw(w.device("dev_a"), "dev_a")
    client.send(raw.subscribe(1, ("things/dev_a/led", 2)))
    assert gone(client) == []


def long_topic(w: World) -> None:
    a = w.device("dev_a")
    client = w.raw(a, "dev_a")
    client.send(raw.publish("things/dev_a/" + "x" * 250, b"{}", qos=1))
    assert gone(client) == []
    client = w.raw(a, "dev_a")
    client.send(raw.publish("things/dev_a/" + "/".join("abcdef"), b"{}", qos=1))  # 7 slashes
    assert [p[0] for p in client.packets_until_closed(1)] == [raw.PUBACK]
    client.send(raw.publish("things/dev_a/" + "/".join("abcdefg"), b"{}", qos=1))  # 8
    assert gone(client) == []


def long_client_id(w: World) -> None:
    a = w.device("dev_a")
    client = w.raw(a)
    client.send(raw.connect("d" * 129))
    assert client.connack() == 2
    client = w.raw(a)
    client.send(raw.connect("\x01" * 65535))  # the most MQTT carries: refused by its size
    assert client.connack() == 2


def publish_rate(w: World) -> None:
    a = w.device("dev_a")
    client = w.raw(a, "dev_a")
    client.send(raw.burst("things/dev_a/environment", 150))
    acks = []
    while (packet := client.packet(1)) is not None:
        acks.append(packet)
    # Every publish acknowledged, by its own id: the sender's in-flight window never leaks.
    assert [(kind, int.from_bytes(body, "big")) for kind, _, body in acks] == [
        (raw.PUBACK, n) for n in range(1, 151)
    ]
    assert not client.closed  # still connected
    assert 100 <= len(w.recorded("dev_a")) < 110  # the rest discarded: neither stored nor sent


def payload_limit(w: World) -> None:
    a = w.device("dev_a")
    client = w.raw(a, "dev_a")
    client.send(raw.publish("things/dev_a/environment", b"x" * (128 * 1024), qos=1))
    assert [p[0] for p in client.packets_until_closed(2)] == [raw.PUBACK]  # 128 KB: fine
    client.send(raw.publish("things/dev_a/environment", b"x" * (128 * 1024 + 1), qos=1))
    assert gone(client) == []
    client = w.raw(a, "dev_a")
    # A header that announces 10 MB: closed before the payload comes, nothing buffered.
    client.send(bytes([0x32, 0x80, 0x80, 0x80, 0x05]) + b"\x00\x1athings/dev_a/environment")
    assert gone(client, 2) == []
    assert len(w.recorded("dev_a")) == 1


def too_many_subscriptions(w: World) -> None:
    client = w.raw(w.device("dev_a"), "dev_a")
    client.send(raw.subscribe(1, *[(f"things/dev_a/{i}", 1) for i in range(9)]))
    assert gone(client) == []
    client = w.raw(w.device("dev_b"), "dev_b")
    for batch in range(7):
        filters = [(f"things/dev_b/{batch}/{i}", 1) for i in range(8)]
        client.send(raw.subscribe(batch + 1, *filters))
    packets = gone(client)  # 6 x 8 = 48 fit; the seventh request passes 50
    assert [p[0] for p in packets] == [raw.SUBACK] * 6


def second_connect(w: World) -> None:
    client = w.raw(w.device("dev_a"), "dev_a")
    client.send(raw.connect("dev_a"))
    assert gone(client) == []


def device_receives_only_its_own(w: World) -> None:
    a, b = w.device("dev_a"), w.device("dev_b")
    peer = w.paho(a)
    peer.client.subscribe("things/dev_a/#", qos=1)
    assert peer.subscribed.wait(5)
    w.paho(b).client.publish("things/dev_b/environment", b"{}", qos=1).wait_for_publish(5)
    w.observer().client.publish("things/dev_a/led", b"5", qos=1).wait_for_publish(5)
    assert peer.wait_for(2, timeout=1) == [("things/dev_a/led", b"5")]


def observer_commands_leds_only(w: World) -> None:
    w.device("dev_a")
    watcher = w.observer()
    watcher.client.publish("things/dev_a/environment", b"{}", qos=1)
    assert closed_soon(watcher)


# Resources


def silent_sockets_closed(w: World) -> None:
    w.device("dev_a")
    plain = socket.create_connection(("localhost", w.cloud.broker_port))  # never starts TLS
    tls = w.raw(w.device("dev_b"))  # TLS done, never sends CONNECT
    plain.settimeout(5)
    started = time.monotonic()
    assert plain.recv(1) == b""
    assert tls.packet(5) is None and tls.closed
    assert time.monotonic() - started < 4  # the timeout here is 1 s (10 s by default)


def reader_that_never_reads(w: World) -> None:
    client = w.raw(w.device("dev_a"), "dev_a")
    pings = bytes([0xC0, 0]) * 32768  # 64 KiB of PINGREQ a write, answers never read
    with pytest.raises(OSError):
        for _ in range(256):  # 16 MiB at the most; the broker gives up at 4 MiB of answers
            client.send(pings)


@dataclass(frozen=True)
class Row:
    case: str
    aws: str
    source: str
    check: Callable[[World], None]


ROWS = [
    Row(
        "client id other than the certificate's CN",
        "CONNECT refused: iot:Connect only on client/${iot:Certificate.Subject.CommonName}",
        "AWS: connect-policy.html; iot-policy-actions.html",
        wrong_client_id,
    ),
    Row(
        "publish to another device's topic",
        "connection closed (MQTT 3.1.1), nothing delivered",
        "AWS: iot-policy-actions.html (iot:Publish checked on every PUBLISH); MQTT 3.1.1 close "
        "assumed from AWS SDK maintainers (aws-iot-device-sdk-js#125)",
        foreign_topic_publish,
    ),
    Row(
        "subscribe to another device's topic",
        "connection closed, no SUBACK",
        "AWS: iot-policy-actions.html (iot:Subscribe); close assumed as above",
        foreign_subscribe,
    ),
    Row(
        "unregistered or INACTIVE certificate",
        "refused: a certificate must be ACTIVE to connect (kit: closed as soon as TLS is "
        "done, before any MQTT is read)",
        "AWS: activate-or-deactivate-device-cert.html",
        unregistered_certificate,
    ),
    Row(
        "certificate from another CA",
        "TLS handshake fails",
        "AWS: x509-client-certs.html (CA must be registered)",
        foreign_ca_certificate,
    ),
    Row(
        "no client certificate",
        "TLS handshake fails on port 8883",
        "AWS: protocols.html (8883 requires X.509 client authentication)",
        no_certificate,
    ),
    Row(
        "second connection with the same client id",
        "new one accepted, first closed with DUPLICATE_CLIENTID",
        "AWS: mqtt.html#mqtt-differences; life-cycle-events.html",
        duplicate_client_id,
    ),
    Row(
        "device named after the observer",
        "(no observers on AWS: notebooks use SigV4) refused at registration",
        "kit choice: names starting with kit- are the kit's own",
        reserved_name_refused,
    ),
    Row(
        "a device certificate with CN kit-observer",
        "rights come from the policy attached to the certificate, never from its name",
        "AWS: iot-policies.html; kit: role from the principals table",
        observer_rights_from_the_registry,
    ),
    Row(
        "certificate revoked while connected",
        "its connections are closed (within minutes on AWS; at once here), reason AUTH_ERROR",
        "https://docs.aws.amazon.com/iot/latest/apireference/API_UpdateCertificate.html",
        revocation_ends_live_connections,
    ),
    Row(
        "observer certificate revoked while connected",
        "closed like any principal",
        "as above",
        observer_revoked,
    ),
    Row(
        "refused CONNECT with another's client id (clean session)",
        "refused; the connected client keeps its session and subscriptions",
        "AWS: iot-policy-actions.html (iot:Connect decided before the session)",
        refused_connect_leaves_session_clean,
    ),
    Row(
        "refused CONNECT with another's client id (persistent session)",
        "refused; the connected client is not evicted",
        "AWS: as above (only an authorised connection takes a client id over)",
        refused_persistent_connect_evicts_nobody,
    ),
    Row(
        "persistent session resumed",
        "session present = 1; stored QoS 1 messages delivered",
        "AWS: mqtt.html#mqtt-persistent-sessions",
        persistent_session_resumes,
    ),
    Row(
        "persistent session expiry",
        "session and its queue end after 1 hour (default)",
        "AWS: mqtt.html#mqtt-persistent-sessions; limit 'Persistent session expiry period'",
        persistent_session_expires,
    ),
    Row(
        "persistent session resumed with another certificate",
        "AWS keys sessions by client id alone and would resume it",
        "kit choice (hardening beyond AWS): only the certificate that made it resumes it",
        persistent_session_needs_its_certificate,
    ),
    Row(
        "lifecycle events",
        "connected/disconnected on $aws/events/presence/..., AWS's JSON fields",
        "AWS: life-cycle-events.html#connect-disconnect",
        lifecycle_events,
    ),
    Row(
        "lifecycle event for a refused CONNECT",
        "$aws/events/presence/connect_failed/<clientId>, AUTHORIZATION_FAILED",
        "AWS: life-cycle-events.html#connect-authfailure-event",
        connect_failed_event,
    ),
    Row(
        "device subscribes to lifecycle events",
        "closed: the device policy grants nothing under $aws",
        "AWS: reserved-topics.html; the device policy",
        device_cannot_watch_presence,
    ),
    Row(
        "device publishes a forged lifecycle event",
        "closed, nothing delivered: clients cannot publish to $aws/events",
        "AWS: reserved-topics.html",
        device_cannot_forge_presence,
    ),
    Row(
        "will on a topic the device may not publish to",
        "CONNECT fails (connect_failed, AUTHORIZATION_FAILED); the will is never delivered",
        "AWS: life-cycle-events.html#connect-authfailure-event",
        will_on_foreign_topic,
    ),
    Row(
        "will on its own topic",
        "published when the connection drops; not after DISCONNECT",
        "AWS: mqtt.html#mqtt-lwt",
        will_on_own_topic,
    ),
    Row(
        "retained will",
        "needs iot:RetainPublish, which the device policy does not grant: CONNECT fails",
        "AWS: retained-message-policy-examples.html",
        retained_will,
    ),
    Row(
        "retained publish",
        "needs iot:RetainPublish: closed, no PUBACK, nothing retained or recorded",
        "AWS: iot-policy-actions.html (iot:RetainPublish); close assumed as for iot:Publish",
        retained_publish,
    ),
    Row(
        "forbidden QoS 1 publish",
        "closed without PUBACK",
        "assumed (AWS documents PUBACK 0x87 only for MQTT 5)",
        forbidden_publish_gets_no_puback,
    ),
    Row(
        "topic name with + or #",
        "protocol violation: closed, nothing after it read",
        "AWS: topics.html#topicfilters; close assumed (MQTT-3.3.2-2)",
        wildcard_in_topic_name,
    ),
    Row(
        "QoS 2 publish",
        "no PUBACK/PUBREC: closed",
        "AWS: mqtt.html#mqtt-qos ('doesn't send a PUBACK or SUBACK'); close assumed",
        qos2_publish,
    ),
    Row(
        "QoS 2 subscribe",
        "no SUBACK: closed",
        "AWS: mqtt.html#mqtt-qos; close assumed",
        qos2_subscribe,
    ),
    Row(
        "topic over 256 bytes or with more than 7 slashes",
        "rejected: closed",
        "AWS quotas: iot-core.html#message-broker-limits; close assumed",
        long_topic,
    ),
    Row(
        "client id over 128 bytes",
        "refused (kit: CONNACK 2, identifier rejected; the id is never logged, only its size)",
        "AWS quotas: iot-core.html#message-broker-limits ('Client ID size': 128 bytes of "
        "UTF-8 encoded characters)",
        long_client_id,
    ),
    Row(
        "more than 100 publishes per second on one connection",
        "the excess is discarded and the connection stays; with MQTT 3.1.1 AWS sends no PUBACK "
        "for a discarded QoS 1 publish, so each keeps a slot of the sender's in-flight window. "
        "The kit discards the same and acknowledges it, so no client's window leaks",
        "AWS quotas: iot-core.html#message-broker-limits ('Publish requests per second per "
        "connection', 100: 'Publish requests exceeding that limit will be discarded'); no "
        "PUBACK: AWS SDK maintainer, aws-iot-device-sdk-python-v2#257. AWS disconnects only "
        "for throttling it names THROTTLED (ota-troubleshooting-fleet-disconnects.html), not "
        "for this. Kit choice: the PUBACK",
        publish_rate,
    ),
    Row(
        "payload over 128 KB",
        "rejected: closed (CLIENT_ERROR), nothing stored; refused from the header on",
        "AWS quotas: iot-core.html#message-broker-limits; life-cycle-events.html",
        payload_limit,
    ),
    Row(
        "more than 8 filters in a SUBSCRIBE, or 50 subscriptions on a connection",
        "rejected and the connection closed",
        "AWS quotas: 'Subscriptions per connection', 'Subscriptions per subscribe request'",
        too_many_subscriptions,
    ),
    Row(
        "a second CONNECT on one connection",
        "closed with CLIENT_ERROR",
        "AWS: life-cycle-events.html (CLIENT_ERROR)",
        second_connect,
    ),
    Row(
        "a device receives only its own topics",
        "iot:Receive on topic/things/${iot:ClientId}/* only",
        "AWS: iot-policy-actions.html (iot:Receive checked on delivery)",
        device_receives_only_its_own,
    ),
    Row(
        "observer publishes anything but an LED command",
        "closed (the observer's rights: read things and lifecycle events, write LEDs)",
        "kit choice (on AWS the notebook's IAM policy decides)",
        observer_commands_leds_only,
    ),
    Row(
        "a client that sends and never reads what the broker answers",
        "its connection is closed (AWS throttles a client past its throughput limit)",
        "kit choice: closed at 4 MiB of unread answers (THROTTLED)",
        reader_that_never_reads,
    ),
    Row(
        "socket that never finishes TLS or never sends CONNECT",
        "closed after a few seconds",
        "assumed (AWS closes idle unauthenticated sockets); kit: 10 s",
        silent_sockets_closed,
    ),
]


@pytest.fixture
def world(tmp_path, ca):
    """A local cloud with a 1 s connect timeout; `ca` is a CA the cloud does not know."""
    with LocalCloud(port=0, ws_port=0, connect_timeout=1.0, session_expiry=EXPIRY) as cloud:
        yield World(cloud, tmp_path, ca)


@pytest.mark.parametrize("row", ROWS, ids=[row.case for row in ROWS])
def test_the_local_broker_does_what_aws_does(row: Row, world: World) -> None:
    """What AWS IoT Core does (row.aws, per row.source), the local broker does too."""
    row.check(world)


@pytest.mark.parametrize(
    ("asked", "served"),
    [(0, 1200), (1, 30), (29, 30), (30, 30), (60, 60), (1200, 1200), (1201, 1200), (65535, 1200)],
)
def test_keepalive_is_served_as_aws_serves_it(asked: int, served: int) -> None:
    """AWS quotas: 'If a client requests a keep-alive interval of zero, the default keep-alive
    interval will be used' (1,200 s); over 1,200 likewise; 1-29 s is treated as 30 s. (Closing a
    client silent for 1.5 times that takes 45 s at the least, too long to wait for here.)"""
    assert served_keepalive(asked) == served
