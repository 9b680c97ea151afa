"""Quotas (issue 26, attack 2): a student's own devices cannot fill the instructor's memory or disk.

600 non-JSON payloads of 128 KB at 90/s on each of three of a student's devices once took the
class server from 82 to 314 MB (the feed kept 600 rejected events per device with their whole
payloads, and never let a removed device go) and cloud.db by hundreds of MB (every byte
recorded, kept 30 days after the device was removed). Now the store keeps 2 KB of a payload
(all any reader takes) with its size, a device at most DEVICE_QUOTA bytes (its oldest make
room, and the broker's log says so once), a removed device's messages go with it, and the
feed keeps 200 bytes of a rejected payload and forgets devices the cloud no longer has.

Real SQLite, a real recorder thread, a real class site and local cloud over TLS, and
`kit class serve` as the instructor runs it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from class_server import new_class, serving
from class_site import Site, cloud, own_device, site
from helpers import csr_pem, new_key, wait_until
from mqtt_peers import Peer, connect

from kit.classroom.live import SHOWN_BYTES
from kit.cloud.local import LocalCloud, cloud_dir
from kit.cloud.recorder import Recorder
from kit.cloud.service import service_state
from kit.cloud.store import DEVICE_QUOTA, STORED_BYTES, TRIM_TO, Store
from kit.places import using_home
from kit.telemetry import Rejected

__all__ = ["cloud", "site"]  # fixtures

BIG = 128 * 1024  # AWS IoT Core's largest payload
MB = 1024 * 1024


def test_the_store_keeps_what_readers_take_and_the_size_it_had(kit_home: Path) -> None:
    store = Store(cloud_dir() / "cloud.db")
    assert store.record("things/q_a/environment", b"x" * BIG, 1000.0)
    assert store.record("things/q_a/environment", b'{"temperature": 1, "humidity": 2}', 1001.0)
    big, small = store.messages("q_a")
    assert big.payload == b"x" * STORED_BYTES
    assert small.payload == b'{"temperature": 1, "humidity": 2}'
    # A reader that takes payloads of at most 2 KB never gets a shortened one.
    assert store.messages("q_a", max_bytes=STORED_BYTES) == [small]
    usage = store.usage("q_a")
    assert usage.rows == 2 and usage.bytes < 2 * STORED_BYTES + 200 and usage.full is None
    assert store.forget_before(1000.5) == 1
    assert store.usage("q_a").rows == 1 and store.usage("q_a").bytes < 200


def test_a_device_past_its_quota_forgets_its_oldest_and_the_log_says_so_once(
    kit_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(cloud_dir() / "cloud.db")
    now = time.time()
    store.record("things/q_other/environment", b"{}", now)
    recorder = Recorder(cloud_dir() / "cloud.db")
    rows = 2 * DEVICE_QUOTA // STORED_BYTES  # twice the quota, in 128 KB payloads
    with caplog.at_level(logging.INFO, logger="kit.broker"):
        for n in range(rows):
            recorder.put("things/q_flood/environment", b"y" * BIG, now + n)
        recorder.close()
    usage = store.usage("q_flood")
    assert DEVICE_QUOTA * TRIM_TO * 0.9 < usage.bytes <= DEVICE_QUOTA and usage.full
    kept = store.messages("q_flood")
    assert len(kept) == usage.rows and kept[-1].received == now + rows - 1  # the newest
    assert store.messages("q_other")  # another device's messages are untouched
    full = [r.getMessage() for r in caplog.records if "quota" in r.getMessage()]
    assert len(full) == 1 and "q_flood" in full[0] and "8 MB" in full[0], full
    print(f"\n{rows} messages of 128 KB: q_flood holds {usage.bytes / MB:.1f} MB, one log line")


def test_a_removed_device_takes_its_messages_with_it(kit_home: Path) -> None:
    cloud = LocalCloud(port=0, ws_port=0)
    from mqtt_peers import make_device

    make_device(kit_home / "devices", "q_gone", cloud)
    cloud.store.record("things/q_gone/environment", b"{}", time.time())
    assert cloud.messages("q_gone") and cloud.store.usage("q_gone").rows == 1
    cloud.unregister("q_gone")
    assert cloud.messages("q_gone") == [] and cloud.store.usage("q_gone").rows == 0


def test_a_recording_from_before_quotas_is_shortened_and_counted(kit_home: Path) -> None:
    path = cloud_dir() / "cloud.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY, thing TEXT NOT NULL, topic TEXT NOT NULL,
            payload BLOB NOT NULL, received REAL NOT NULL);
        CREATE INDEX messages_by_thing ON messages (thing, received);
        PRAGMA user_version = 3;
        """
    )
    old.execute(
        "INSERT INTO messages (thing, topic, payload, received) VALUES (?, ?, ?, ?)",
        ("q_old", "things/q_old/environment", b"z" * BIG, 5.0),
    )
    old.commit()
    old.close()
    store = Store(path)
    [message] = store.messages("q_old")
    assert message.payload == b"z" * STORED_BYTES
    assert store.messages("q_old", max_bytes=STORED_BYTES) == []  # it was 128 KB
    assert store.usage("q_old").rows == 1
    assert Store(path).usage("q_old").rows == 1  # opened again: counted once


def test_the_feed_keeps_little_of_a_rejected_payload_and_forgets_a_removed_device(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    board = own_device(site, cloud, tmp_path, "q_feed", "ada")
    for _ in range(5):
        board.client.publish("things/q_feed/environment", b"\xff" * BIG, qos=1).wait_for_publish(5)
    wait_until(lambda: len(site.feed.recent("q_feed", 10)) >= 5, what="the rejected events")
    rejected = [n.event for n in site.feed.recent("q_feed", 10) if n.kind == "rejected"]
    assert rejected and all(isinstance(e, Rejected) for e in rejected)
    assert all(len(e.payload) <= SHOWN_BYTES for e in rejected)  # type: ignore[union-attr]
    board.close()
    cloud.unregister("q_feed")  # as `kit unregister`, the class's removal, or the AWS console
    assert site.feed.prune() == ["q_feed"]  # what the feed's timer does every minute
    assert site.feed.recent("q_feed", 10) == []
    site.store.release("q_feed")


def flood(peer: Peer, thing: str, count: int, rate: float) -> None:
    """`count` non-JSON payloads of 128 KB from `peer` at `rate` a second (QoS 1)."""
    payload = b"\x00not json" + b"A" * (BIG - 9)
    start = time.monotonic()
    for n in range(count):
        peer.client.publish(f"things/{thing}/environment", payload, qos=1)
        pause = start + (n + 1) / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)


def database_bytes(home: Path) -> int:
    folder = home / "cloud"
    return sum(p.stat().st_size for p in folder.glob("cloud.db*"))


def recorded_of(home: Path, things: list[str]) -> int:
    db = sqlite3.connect(f"file:{home / 'cloud' / 'cloud.db'}?mode=ro", uri=True, timeout=30)
    try:
        marks = ",".join("?" * len(things))
        sql = f"SELECT COUNT(*) FROM messages WHERE thing IN ({marks})"
        return int(db.execute(sql, things).fetchone()[0])
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_flooding_devices_leave_the_server_and_the_disk_bounded(tmp_path: Path) -> None:
    home = tmp_path / "instructor"
    running = new_class(home, ["Ada Flood"], tmp_path / "roster.csv")
    username, password = running.cards["Ada Flood"]
    things = [f"q_flood_{n}" for n in range(3)]
    with serving(running, "--broker-host", "localhost") as served:
        api = httpx.Client(base_url=f"{running.site}/api", verify=False, timeout=30)
        token = api.post("/token", json={"username": username, "password": password})
        api.headers["Authorization"] = f"Bearer {token.json()['token']}"
        peers = []
        for thing in things:
            key = new_key()
            made = api.post("/things", json={"csr": csr_pem(thing, key=key)})
            assert made.status_code == 201, made.text
            files = tmp_path / thing
            files.mkdir()
            from cryptography.hazmat.primitives import serialization

            (files / "key.pem").write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            (files / "cert.pem").write_text(made.json()["certificate_pem"])
            (files / "ca.pem").write_text(made.json()["ca_pem"])
            peer = connect(
                "localhost",
                made.json()["broker_port"],
                thing,
                files / "cert.pem",
                files / "key.pem",
                files / "ca.pem",
            )
            assert peer.accepted
            peers.append(peer)
        server = psutil.Process(served.process.pid)
        with using_home(home):
            state = service_state()
        assert state is not None
        broker = psutil.Process(state.pid)
        time.sleep(2)  # the site and the feed settle
        server_before, broker_before = server.memory_info().rss, broker.memory_info().rss
        disk_before = database_bytes(home)

        floods = [
            threading.Thread(target=flood, args=(peer, thing, 600, 90))
            for peer, thing in zip(peers, things, strict=True)
        ]
        for thread in floods:
            thread.start()
        server_peak = server_before
        while any(thread.is_alive() for thread in floods):
            server_peak = max(server_peak, server.memory_info().rss)
            time.sleep(0.2)
        wait_until(lambda: recorded_of(home, things) >= 1800, timeout=120, what="the recorder")
        time.sleep(1)
        server_peak = max(server_peak, server.memory_info().rss)
        server_growth = (server_peak - server_before) / MB
        broker_growth = (broker.memory_info().rss - broker_before) / MB
        disk_growth = (database_bytes(home) - disk_before) / MB
        print(
            f"\n3 devices x 600 x 128 KB: class server {server_before / MB:.0f} -> "
            f"{server_peak / MB:.0f} MB (+{server_growth:.1f}), broker +{broker_growth:.1f} MB, "
            f"cloud.db and its WAL +{disk_growth:.1f} MB"
        )
        for peer in peers:
            peer.close()
        for thing in things:
            assert api.delete(f"/things/{thing}").status_code == 204
        assert recorded_of(home, things) == 0  # removed devices take their messages along
        assert server_growth < 40  # was +232 MB
        assert disk_growth < 20  # was +225 MB
