"""One student cannot sink the broker's log or a client's in-flight window (issue 26, attacks 1
and 5): a certificate that is not ACTIVE is refused as soon as TLS is done, before anything it
sends is read or logged; client data reaches the log short and printable; refusal lines are a
few a second; broker.log rotates by size; publishes over AWS's rate are acknowledged and dropped.

Everything runs on 127.0.0.1 and is bounded in count and time. The log tests run the real
service (`kit cloud up`), which writes broker.log the way it does for a class.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mqtt_raw as raw
import paho.mqtt.client as paho
import pytest
from mqtt_peers import DeviceFiles, connect, make_device

from kit import errors, locks
from kit.cloud import local
from kit.cloud import service as cloud_service
from kit.cloud.local import LocalCloud
from kit.cloud.mqtt_connection import LOGGED_CHARS, QuietLog, printable
from kit.cloud.options import LocalOptions

FLOOD = 400  # CONNECTs, as in the issue (400 in 1.3 s added 100 MiB to broker.log)
HUGE_ID = "\x01" * 65535  # the largest client id MQTT can carry; repr() made it 4 bytes a byte
LOG_GROWTH_BOUND = 64 * 1024  # bytes the whole flood may add to the cloud's log files


def kit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def service():
    """`kit cloud up` on free ports (broker.log written by the service itself); down after."""
    done = kit("cloud", "up", "--port", str(free_port()), "--ws-port", str(free_port()))
    assert done.returncode == 0, done.stderr
    state = cloud_service.service_state()
    assert state is not None
    yield state
    kit("cloud", "down")


def log_bytes() -> int:
    """Everything the local cloud has written to its log files (rotated ones and output too)."""
    folder = local.cloud_dir()
    files = [*folder.glob("broker.log*"), folder / "service.out"]
    return sum(f.stat().st_size for f in files if f.exists())


def removed_device(folder: Path, name: str, cloud: LocalCloud) -> DeviceFiles:
    """A certificate the kit issued, then removed with its thing (as `kit unregister` does)."""
    files = make_device(folder, name, cloud)
    cloud.unregister(name)
    return files


def hammer(port: int, files: DeviceFiles, connect_packet: bytes) -> None:
    """One attacker connection: TLS with `files`, send the CONNECT, read until closed."""
    try:
        client = raw.RawClient("localhost", port, files.ca_file, files.cert_file, files.key_file)
    except (OSError, ssl.SSLError):
        return  # refused during the handshake: as good as after it
    try:
        client.send(connect_packet)
        client.packets_until_closed(3)
    except (OSError, ssl.SSLError):
        pass  # the broker closed first: the rest of the CONNECT had nowhere to go
    finally:
        client.close()


def test_a_flood_of_huge_client_ids_from_a_removed_certificate_adds_little_to_the_log(
    service, tmp_path
) -> None:
    """Issue 26, attack 1: before, each refusal logged the id's repr (262 KB a line)."""
    files = removed_device(tmp_path, "hyg_flood", LocalCloud())
    before = log_bytes()
    packet = raw.connect(HUGE_ID)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: hammer(service.port, files, packet), range(FLOOD)))
    seconds = time.monotonic() - started
    time.sleep(1.5)  # the last second's "... and K more" line is written by housekeeping
    grown = log_bytes() - before
    print(f"\n{FLOOD} CONNECTs in {seconds:.1f} s added {grown} bytes to the cloud's logs")
    assert grown < LOG_GROWTH_BOUND, f"{FLOOD} refused CONNECTs added {grown} bytes to the log"
    text = (local.cloud_dir() / "broker.log").read_text(encoding="utf-8", errors="replace")
    assert "\x01" not in text and "\\x01" not in text  # no byte of the id, raw or escaped
    assert "refused a connection from 127.0.0.1: its certificate is not registered" in text
    assert "more refused connections in that second" in text


def test_broker_log_rotates_by_size_and_a_failed_start_still_says_why(tmp_path) -> None:
    """broker.log near its cap when the service starts: the next lines start a new file."""
    folder = local.cloud_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "broker.log"
    log.write_text("x" * (cloud_service.LOG_BYTES - 100) + "\n")  # a log grown for weeks
    done = kit("cloud", "up", "--port", str(free_port()), "--ws-port", str(free_port()))
    try:
        assert done.returncode == 0, done.stderr
        state = cloud_service.service_state()
        assert state is not None
        files = make_device(tmp_path, "hyg_rot", LocalCloud())
        for _ in range(3):
            peer = connect("localhost", state.port, files.name, *_identity(files))
            assert peer.accepted
            peer.close()
        time.sleep(0.5)
    finally:
        kit("cloud", "down")
    old = folder / "broker.log.1"
    assert old.exists() and old.read_text().startswith("xxx"), "broker.log never rotated"
    assert log.stat().st_size < cloud_service.LOG_BYTES
    assert "kit.broker: accepted hyg_rot" in log.read_text()  # the decisions notebook 05 reads
    assert not (folder / f"broker.log.{cloud_service.LOG_BACKUPS + 1}").exists()
    if sys.platform != "win32":  # both private, as every file in the data folder
        assert {stat.S_IMODE(f.stat().st_mode) for f in (log, old)} == {0o600}
    # What the process printed went to service.out, not into the rotating log.
    assert "Local cloud: MQTT over TLS" in (folder / "service.out").read_text()

    # A start that fails says why, from the process's own output.
    holder = locks.hold_lock(cloud_service.managed().lock)
    assert holder is not None
    try:
        options = LocalOptions(port=free_port(), ws_port=free_port())
        with pytest.raises(errors.CloudError, match="already running"):
            cloud_service.start_service(options, timeout=20)
    finally:
        holder.close()


def _identity(files: DeviceFiles) -> tuple[Path, Path, Path]:
    return files.cert_file, files.key_file, files.ca_file


@pytest.fixture
def cloud():
    with LocalCloud(port=0, ws_port=0, connect_timeout=10.0) as running:
        yield running


@pytest.fixture
def broker_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="kit.broker")
    return caplog


def test_a_certificate_that_is_not_active_is_refused_before_anything_is_read(
    cloud, tmp_path, broker_log
) -> None:
    """Removed and INACTIVE certificates: closed right after TLS, no CONNACK, the client id
    they sent never logged (before: read, parsed, answered, and logged with its id)."""
    removed = removed_device(tmp_path, "hyg_gone", cloud)
    inactive = make_device(tmp_path, "hyg_off", cloud)
    with cloud.store.transaction() as db:
        db.execute("UPDATE principals SET status = 'INACTIVE' WHERE name = 'hyg_off'")
    for files, why in ((removed, "not registered"), (inactive, "INACTIVE")):
        silent = raw.RawClient("localhost", cloud.broker_port, files.ca_file, *_key(files))
        started = time.monotonic()
        assert silent.packet(3) is None and silent.closed  # closed without waiting for CONNECT
        assert time.monotonic() - started < 2  # the connect timeout here is 10 s
        client = raw.RawClient("localhost", cloud.broker_port, files.ca_file, *_key(files))
        marker = f"{files.name}-sent-this"
        with contextlib.suppress(OSError):  # the broker may have closed already
            client.send(raw.connect(marker))
        assert client.connack() is None and client.closed
        said = [r.getMessage() for r in broker_log.records]
        assert any(f"its certificate is {why}" in line for line in said), said
        assert not any(marker in line for line in said), said


def _key(files: DeviceFiles) -> tuple[Path, Path]:
    return files.cert_file, files.key_file


def test_client_data_reaches_the_log_short_and_printable(cloud, tmp_path, broker_log) -> None:
    """Control characters (a terminal escape, a bell) and a 56 KB topic, from an ACTIVE device."""
    files = make_device(tmp_path, "hyg_text", cloud)
    nasty = "\x1b[2J\x07\u202e"
    attempts = [
        raw.connect("hyg_text" + nasty * 10),  # 88 bytes, not its CN: refused, the id quoted
        raw.connect("\x1b" * 65535),  # over 128 bytes: only its size is said
    ]
    for packet in attempts:
        client = raw.RawClient("localhost", cloud.broker_port, files.ca_file, *_key(files))
        client.send(packet)
        assert client.connack() in (2, 5)
    wildcard = "things/hyg_text/+" + nasty * 7000  # a wildcard: refused before its length
    client = raw.RawClient("localhost", cloud.broker_port, files.ca_file, *_key(files))
    client.send(raw.connect("hyg_text"))
    assert client.connack() == 0
    client.send(raw.publish(wildcard, b"{}", qos=1))
    assert client.packets_until_closed(3) == [] and client.closed
    client = raw.RawClient("localhost", cloud.broker_port, files.ca_file, *_key(files))
    client.send(raw.connect("hyg_text"))
    assert client.connack() == 0
    client.send(raw.subscribe(1, ("things/hyg_text/#/x" + nasty * 7000, 1)))  # malformed
    assert client.packets_until_closed(3) == [] and client.closed
    said = [r.getMessage() for r in broker_log.records]
    assert len(said) >= 4, said
    for line in said:
        assert line.isprintable() and len(line) < 600, repr(line[:300])


def test_a_publisher_over_the_rate_has_every_publish_acknowledged(cloud, tmp_path) -> None:
    """Issue 26, attack 5 (the broker's half): paho at full speed, QoS 1. Before, the excess
    got no PUBACK and each one kept one of paho's 20 in-flight slots: the window filled and
    the client could send nothing more for the rest of its session."""
    files = make_device(tmp_path, "hyg_fast", cloud)
    peer = connect("localhost", cloud.broker_port, files.name, *_identity(files))
    assert peer.accepted
    sent = [
        peer.client.publish("things/hyg_fast/environment", b'{"n": %d}' % n, qos=1)
        for n in range(600)
    ]
    deadline = time.monotonic() + 15
    while not all(info.is_published() for info in sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    waiting = sum(not info.is_published() for info in sent)
    recorded = len(cloud.messages("hyg_fast"))
    peer.close()
    print(f"\n600 QoS 1 publishes: {waiting} unacknowledged, {recorded} recorded")
    assert waiting == 0, f"{waiting} publishes never acknowledged: paho's window leaked"
    assert recorded < 600  # the rate still holds: the excess was dropped, not delivered


def test_the_class_observer_is_never_stuck_by_its_own_burst(cloud) -> None:
    """The class server's one observer sends every student's LED commands: a burst over 100/s
    must not leave its in-flight window (paho's default, 20) full, or "All LEDs off" waits."""
    identity = cloud.observer()
    peer = connect(
        "localhost",
        identity.port,
        "kit-observer-hygiene",
        identity.cert_file,
        identity.key_file,
        identity.ca_file,
    )
    assert peer.accepted
    burst = [peer.client.publish("things/someone/led", b"50", qos=1) for _ in range(300)]
    deadline = time.monotonic() + 15
    while not all(info.is_published() for info in burst) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(info.is_published() for info in burst)
    after = peer.client.publish("things/someone/led", b"0", qos=1)  # "All LEDs off"
    after.wait_for_publish(5)
    assert after.is_published() and after.rc == paho.MQTT_ERR_SUCCESS
    peer.close()


def test_quiet_log_writes_a_few_lines_a_second_then_says_how_many_more() -> None:
    """The limiter alone, on an injected clock: 25 refusals and 3 closes in one second."""
    now = [100.0]
    logger = logging.getLogger("kit.broker.test-quiet")
    logger.propagate = False
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    quiet = QuietLog(logger, per_second=10, clock=lambda: now[0])
    for n in range(25):
        quiet.info("refused connections", "refused %d", n)
    for n in range(3):
        quiet.info("closed connections", "closed %d", n)
    quiet.flush()  # the second has not ended: nothing to sum up yet
    assert len(lines) == 13
    now[0] += 1.0
    quiet.flush()
    assert lines[13:] == [
        "... and 15 more refused connections in that second (at most 10 lines a second are written)"
    ]
    quiet.info("refused connections", "refused again")
    assert lines[-1] == "refused again"


def test_printable_is_short_and_says_the_size() -> None:
    assert printable("dev_01") == "dev_01"
    assert printable("a\x1b[2J\x07\u202eb") == "a?[2J??b"
    shown = printable("\x01" * 65535)
    assert shown == "?" * LOGGED_CHARS + "... (65535 bytes)"
