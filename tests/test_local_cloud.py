"""The embedded local cloud over real TLS on 127.0.0.1: registry, policy, recorder."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from cryptography import x509
from helpers import csr_pem, new_key
from mqtt_peers import connect, make_device

from kit import certs, devices, errors, steps
from kit.cloud.local import LocalCloud


@pytest.fixture
def cloud():
    """A local cloud with its broker on free ports of 127.0.0.1."""
    with LocalCloud(port=0, ws_port=0) as running:
        yield running


def device_peer(cloud, files, client_id=None, transport="tcp"):
    port = cloud.broker_port if transport == "tcp" else cloud.ws_broker_port
    return connect(
        "localhost",
        port,
        client_id or files.name,
        files.cert_file,
        files.key_file,
        files.ca_file,
        transport,
    )


def test_registered_device_publishes_and_the_recorder_keeps_it(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    peer = device_peer(cloud, files)
    assert peer.accepted
    payload = b'{\n  "temperature": 71.2,\n  "humidity": 43\n}'
    peer.client.publish("things/device_01/environment", payload, qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while not cloud.messages("device_01") and time.monotonic() < deadline:
        time.sleep(0.02)
    [message] = cloud.messages("device_01")
    assert (message.topic, message.payload) == ("things/device_01/environment", payload)
    peer.close()


def test_registration_writes_the_device_record(cloud) -> None:
    csr = certs.load_csr(csr_pem("device_01"))
    registered = steps.register(cloud, csr, slot=2, board="sim://default", chip_serial="0123AB")
    registration, record = registered.registration, devices.load()
    assert registered.became_current and registered.previous_current is None
    assert record.thing == "device_01" and record.cloud == "local" and record.slot == 2
    assert (record.broker_host, record.broker_port) == ("localhost", cloud.broker_port)
    assert record.certificate_pem == registration.certificate_pem
    assert certs.load_certificate(record.ca_pem).is_ca
    assert certs.matches(csr, certs.load_certificate(registration.certificate_pem))


def test_wrong_client_id_is_refused(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    peer = device_peer(cloud, files, client_id="device_02")
    assert not peer.accepted


def test_forbidden_topic_disconnects(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    peer = device_peer(cloud, files)
    assert peer.accepted
    peer.client.publish("things/device_02/environment", b"{}", qos=1)
    assert peer.disconnected.wait(5)
    assert cloud.messages("device_02") == []


def test_forbidden_subscription_disconnects(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    peer = device_peer(cloud, files)
    peer.client.subscribe("things/+/environment", qos=1)
    assert peer.disconnected.wait(5)


def test_device_receives_its_own_led_commands(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    peer = device_peer(cloud, files)
    peer.client.subscribe("things/device_01/led", qos=1)
    assert peer.subscribed.wait(5)
    observer = cloud.observer()
    watcher = connect(
        "localhost",
        observer.port,
        "kit-observer-test",
        observer.cert_file,
        observer.key_file,
        observer.ca_file,
    )
    assert watcher.accepted
    watcher.client.publish("things/device_01/led", b"40", qos=1)
    assert peer.wait_for(1) == [("things/device_01/led", b"40")]
    assert not peer.disconnected.is_set()


def test_unregistered_certificate_is_refused(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    steps.unregister(cloud, "device_01")
    assert cloud.things() == []
    assert not device_peer(cloud, files).accepted


def test_certificate_from_another_ca_is_refused(cloud, tmp_path, ca) -> None:
    key = new_key()
    (tmp_path / "k.pem").write_bytes(__import__("helpers").private_key_pem(key).encode())
    (tmp_path / "c.pem").write_text(ca.issue(key.public_key(), "device_01"))
    files = make_device(tmp_path / "real", "device_01", cloud)
    peer = connect(
        "localhost",
        cloud.broker_port,
        "device_01",
        tmp_path / "c.pem",
        tmp_path / "k.pem",
        files.ca_file,
    )
    assert not peer.accepted


def test_no_client_certificate_is_refused(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    assert not connect(
        "localhost", cloud.broker_port, "device_01", None, None, files.ca_file
    ).accepted


def test_second_connection_with_the_same_client_id_evicts_the_first(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    first = device_peer(cloud, files)
    assert first.accepted
    second = device_peer(cloud, files)
    assert second.accepted
    assert first.disconnected.wait(5)
    assert not second.disconnected.is_set()
    second.client.publish("things/device_01/environment", b"{}", qos=1).wait_for_publish(5)
    time.sleep(0.2)
    assert not second.disconnected.is_set()
    assert len(cloud.messages("device_01")) == 1


def test_observer_watches_all_and_commands_leds_only(cloud, tmp_path) -> None:
    a = make_device(tmp_path, "device_a", cloud)
    b = make_device(tmp_path, "device_b", cloud)
    observer = cloud.observer()
    watcher = connect(
        "localhost",
        observer.port,
        "kit-observer-1",
        observer.cert_file,
        observer.key_file,
        observer.ca_file,
    )
    watcher.client.subscribe("things/#", qos=1)
    assert watcher.subscribed.wait(5)
    for files in (a, b):
        peer = device_peer(cloud, files)
        peer.client.publish(f"things/{files.name}/environment", b"{}", qos=1).wait_for_publish(5)
    topics = sorted(t for t, _ in watcher.wait_for(2))
    assert topics == ["things/device_a/environment", "things/device_b/environment"]
    watcher.client.publish("things/device_a/environment", b"{}", qos=1)  # not an LED command
    assert watcher.disconnected.wait(5)


def test_observer_needs_its_client_id_prefix(cloud) -> None:
    observer = cloud.observer()
    assert not connect(
        "localhost",
        observer.port,
        "device_01",
        observer.cert_file,
        observer.key_file,
        observer.ca_file,
    ).accepted


def test_websocket_listener_serves_observers(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    observer = cloud.observer()
    watcher = connect(
        "localhost",
        observer.ws_port,
        "kit-observer-ws",
        observer.cert_file,
        observer.key_file,
        observer.ca_file,
        transport="websockets",
    )
    assert watcher.accepted
    watcher.client.subscribe("things/device_01/#", qos=1)
    assert watcher.subscribed.wait(5)
    peer = device_peer(cloud, files)
    peer.client.publish("things/device_01/led/state", b"40", qos=1).wait_for_publish(5)
    assert watcher.wait_for(1) == [("things/device_01/led/state", b"40")]


# Registration rules


def test_registering_the_same_csr_twice_returns_the_same_certificate(cloud) -> None:
    csr = certs.load_csr(csr_pem("device_01"))
    first, again = cloud.register(csr), cloud.register(csr)
    assert first.created and not again.created
    assert again.certificate_pem == first.certificate_pem
    assert len(cloud.store.certificates_of("device_01")) == 1


def test_a_name_bound_to_another_key_is_refused(cloud) -> None:
    cloud.register(certs.load_csr(csr_pem("device_01")))
    with pytest.raises(errors.ThingTakenError, match="already registered with another key"):
        cloud.register(certs.load_csr(csr_pem("device_01")))


def test_failed_registration_leaves_nothing_behind(cloud, monkeypatch) -> None:
    def broken_ca(csr):
        raise OSError("disk full")

    monkeypatch.setattr(cloud.ca, "sign_csr", broken_ca)
    with pytest.raises(OSError):
        cloud.register(certs.load_csr(csr_pem("device_01")))
    assert cloud.things() == [] and cloud.store.certificates_of("device_01") == []


def test_issued_certificates_verify_with_openssl(cloud, tmp_path) -> None:
    registration = cloud.register(certs.load_csr(csr_pem("device_01")))
    (tmp_path / "ca.pem").write_text(registration.ca_pem)
    (tmp_path / "cert.pem").write_text(registration.certificate_pem)
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem")],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip().endswith(": OK"), done.stdout + done.stderr
    issued = certs.load_certificate(registration.certificate_pem)
    assert issued.common_name == "device_01" and issued.subject[0].string_type == "UTF8String"


def test_recorder_queries(cloud) -> None:
    store = cloud.store
    base = time.time() - 100  # recent: the recorder's retention removes what is past 30 days
    for i in range(5):
        store.record("things/a/environment", json.dumps({"temperature": i}).encode(), base + i)
    store.record("things/b/led/state", b"40", base + 2.5)
    assert not store.record("things/a/led", b"10")  # commands are not recorded
    assert [m.received - base for m in cloud.messages("a", latest=2)] == [3, 4]
    assert [m.received - base for m in cloud.messages("a", since=base + 1, until=base + 3)] == [
        1,
        2,
        3,
    ]
    assert [m.thing for m in cloud.messages()] == ["a", "a", "a", "b", "a", "a"]
    assert [m.topic for m in cloud.messages("b", topic_suffix="/led/state")] == [
        "things/b/led/state"
    ]


# Peers no one here wrote: mosquitto_pub / mosquitto_sub


def mosquitto(tool: str, cloud, files, *args: str, identity: bool = True, timeout: float = 10):
    command = [
        tool,
        "-h",
        "localhost",
        "-p",
        str(cloud.broker_port),
        "--cafile",
        str(files.ca_file),
        "-i",
        files.name,
        "-q",
        "1",
        *args,
    ]
    if identity:
        command += ["--cert", str(files.cert_file), "--key", str(files.key_file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_mosquitto_clients_publish_and_subscribe(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "localhost",
            "-p",
            str(cloud.broker_port),
            "--cafile",
            str(files.ca_file),
            "--cert",
            str(files.cert_file),
            "--key",
            str(files.key_file),
            "-i",
            "device_01",
            "-t",
            "things/device_01/led",
            "-C",
            "1",
            "-W",
            "10",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    observer = cloud.observer()
    watcher = connect(
        "localhost",
        observer.port,
        "kit-observer-m",
        observer.cert_file,
        observer.key_file,
        observer.ca_file,
    )
    watcher.client.publish("things/device_01/led", b"75", qos=1).wait_for_publish(5)
    out, _ = sub.communicate(timeout=15)
    assert out.strip() == "75"
    sub.wait()
    done = mosquitto(
        "mosquitto_pub",
        cloud,
        files,
        "-t",
        "things/device_01/environment",
        "-m",
        '{"temperature": 70.1, "humidity": 40}',
    )
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 5
    while not cloud.messages("device_01") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cloud.messages("device_01")[0].payload == b'{"temperature": 70.1, "humidity": 40}'


def test_mosquitto_without_a_certificate_is_refused(cloud, tmp_path) -> None:
    files = make_device(tmp_path, "device_01", cloud)
    done = mosquitto(
        "mosquitto_pub",
        cloud,
        files,
        "-t",
        "things/device_01/environment",
        "-m",
        "{}",
        identity=False,
    )
    assert done.returncode != 0
    assert cloud.messages("device_01") == []


def test_broker_certificate_names_this_computer(cloud) -> None:
    from cryptography import x509

    from kit.cloud.local_broker import host_names

    cert_file, _ = cloud.ca.server_identity(host_names())
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(n) for n in san.get_values_for_type(x509.DNSName)}
    assert {"localhost", f"{__import__('socket').gethostname().split('.')[0]}.local"} <= names
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_telemetry_over_websocket_with_the_same_client_code(cloud, tmp_path) -> None:
    from kit import telemetry

    files = make_device(tmp_path, "device_01", cloud)
    watch = telemetry.Telemetry(cloud.observer(), "device_01", transport="websockets").start()
    try:
        peer = device_peer(cloud, files)
        peer.client.publish(
            "things/device_01/environment", b'{"temperature": 70.1, "humidity": 40}', qos=1
        ).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not watch.readings() and time.monotonic() < deadline:
            time.sleep(0.02)
        [reading] = watch.readings()
        assert (reading.temperature, reading.humidity) == (70.1, 40)
    finally:
        watch.stop()


def test_a_registry_from_before_principals_is_migrated(tmp_path) -> None:
    import sqlite3

    from kit.cloud.local import cloud_dir
    from kit.cloud.local_ca import LocalCA, certificate_id

    key = new_key()
    pem = LocalCA(cloud_dir() / "ca").sign_csr(certs.load_csr(csr_pem("old_01", key=key)))
    old = sqlite3.connect(cloud_dir() / "cloud.db")
    old.executescript(
        "CREATE TABLE things (name TEXT PRIMARY KEY, created REAL NOT NULL);"
        "CREATE TABLE certificates (id TEXT PRIMARY KEY, thing TEXT NOT NULL, pem TEXT NOT NULL,"
        " status TEXT NOT NULL, created REAL NOT NULL);"
    )
    cert_id = certificate_id(certs.load_certificate(pem).der)
    old.execute("INSERT INTO things VALUES ('old_01', 1)")
    old.execute("INSERT INTO certificates VALUES (?, 'old_01', ?, 'ACTIVE', 1)", (cert_id, pem))
    old.commit()
    old.close()
    (tmp_path / "k.pem").write_text(__import__("helpers").private_key_pem(key))
    (tmp_path / "c.pem").write_text(pem)
    with LocalCloud(port=0, ws_port=0) as cloud:
        (tmp_path / "ca.pem").write_text(cloud.ca.pem)
        assert cloud.store.principal(cert_id).role == "device"
        peer = connect(
            "localhost",
            cloud.broker_port,
            "old_01",
            tmp_path / "c.pem",
            tmp_path / "k.pem",
            tmp_path / "ca.pem",
        )
        assert peer.accepted
        peer.close()


def test_the_cloud_registers_without_touching_this_computers_records(cloud, kit_home) -> None:
    # A class server registers a room of students through the same interface: nothing of theirs
    # may land in its own data folder, nor change its current device.
    registration = cloud.register(certs.load_csr(csr_pem("device_01")))
    assert registration.thing == "device_01" and cloud.things() == ["device_01"]
    assert not (kit_home / "devices").exists()
    with pytest.raises(errors.DeviceNotFoundError):
        devices.current_name()


def test_the_observer_connects_on_this_computer_whatever_name_boards_use() -> None:
    # Boards may know the laptop by a name this computer cannot resolve itself (a LAN DNS
    # name, <host>.local without mDNS): the observer, always local, uses localhost.
    from kit import telemetry

    with LocalCloud(port=0, ws_port=0, broker_host="laptop.invalid") as running:
        assert running.broker_host == "laptop.invalid"
        with telemetry.Telemetry(running.observer()) as watch:
            assert watch.connected.is_set()


def test_the_broker_certificate_names_the_host_boards_are_told_to_use() -> None:
    # `--broker-host classroom.lan`: boards dial that name and BearSSL checks it against the
    # broker's certificate, so the certificate must carry it, besides this computer's names.
    with LocalCloud(port=0, ws_port=0, broker_host="classroom.lan") as running:
        chain = (running.ca.folder / "server.pem").read_bytes()
        server = x509.load_pem_x509_certificates(chain)[0]
        san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "classroom.lan" in san.get_values_for_type(x509.DNSName)
        assert "localhost" in san.get_values_for_type(x509.DNSName)
