"""The recorder: off the broker's loop, back-pressure instead of loss, flushed at a graceful stop,
and old messages removed in the background."""

from __future__ import annotations

import sqlite3
import threading
import time

import mqtt_raw as raw
from mqtt_peers import make_device

from kit.cloud.local import LocalCloud, cloud_dir
from kit.cloud.recorder import Recorder
from kit.cloud.store import Store


def hold_database(seconds: float) -> threading.Thread:
    """Another process's long write: the recorder cannot write until it ends."""
    path = cloud_dir() / "cloud.db"
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")

    def release() -> None:
        time.sleep(seconds)
        blocker.execute("COMMIT")
        blocker.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def connected_raw(cloud, tmp_path, name: str) -> raw.RawClient:
    files = make_device(tmp_path, name, cloud)
    client = raw.RawClient(
        "localhost", cloud.broker_port, files.ca_file, files.cert_file, files.key_file
    )
    client.send(raw.connect(name))
    assert client.connack() == 0
    return client


def test_a_full_queue_slows_the_publisher_and_loses_nothing(tmp_path) -> None:
    with LocalCloud(port=0, ws_port=0, recorder_queue=10) as cloud:
        client = connected_raw(cloud, tmp_path, "dev_a")
        held = hold_database(1.5)
        client.send(raw.burst("things/dev_a/environment", 60))
        early = client.count(60, timeout=0.7)
        # While the database is busy, only what fits in the queue (and the batch the writer
        # holds) is acknowledged: the publisher waits, nothing is dropped.
        assert 10 <= early < 60
        held.join()
        assert early + client.count(60, timeout=2) == 60 and not client.closed
        time.sleep(0.3)
        assert len(cloud.messages("dev_a")) == 60


def test_a_graceful_stop_writes_every_acknowledged_message(tmp_path) -> None:
    cloud = LocalCloud(port=0, ws_port=0).start()
    client = connected_raw(cloud, tmp_path, "dev_a")
    held = hold_database(3.0)
    client.send(raw.burst("things/dev_a/led/state", 80))
    assert client.count(80, timeout=2) == 80  # all acknowledged
    assert Store(cloud_dir() / "cloud.db").messages("dev_a", latest=1) == []  # none written yet
    cloud.stop()  # waits for the database, then writes all 80 before it returns
    assert len(Store(cloud_dir() / "cloud.db").messages("dev_a")) == 80
    held.join()


def test_old_messages_are_removed_in_the_background(kit_home) -> None:
    store = Store(cloud_dir() / "cloud.db")
    now = time.time()
    store.record("things/a/environment", b"{}", now - 3 * 86400)
    store.record("things/a/environment", b"{}", now - 1 * 86400)
    store.record("things/a/environment", b"{}", now - 60)
    recorder = Recorder(cloud_dir() / "cloud.db", keep_days=2)
    recorder.close()
    ages = [round((now - m.received) / 86400) for m in store.messages("a")]
    assert ages == [1, 0]


def test_retention_follows_an_injected_clock(kit_home) -> None:
    store = Store(cloud_dir() / "cloud.db")
    store.record("things/a/environment", b"{}", 1_000_000.0)
    clock = [1_000_000.0 + 86400 / 2]
    recorder = Recorder(
        cloud_dir() / "cloud.db", keep_days=1, clock=lambda: clock[0], clean_every=0
    )
    recorder.offer("things/a/environment", b"{}", clock[0])
    recorder.flush()
    assert len(store.messages("a")) == 2  # half a day old: kept
    clock[0] += 2 * 86400  # two days later, the pass after the next batch removes both
    recorder.offer("things/a/led/state", b"1", clock[0])
    recorder.close()
    assert [m.topic for m in store.messages("a")] == ["things/a/led/state"]
