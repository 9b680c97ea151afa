"""A class site for tests in this process: served by uvicorn in a thread over HTTP on
127.0.0.1, with its live feed on a real local cloud (seen as AWS sees it: presence from the
class's own observer); devices are paho clients with their own certificates; streams are read
as a browser's EventSource reads them."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from helpers import wait_until
from mqtt_peers import DeviceFiles, Peer, connect, make_device

from kit.classroom import passwords, web_certificate
from kit.classroom.live import ClassFeed
from kit.classroom.site import SiteOptions, create_app
from kit.classroom.store import Account, ClassStore
from kit.cloud import ObserverIdentity
from kit.cloud.local import LocalCloud
from kit.cloud.store import Presence, Store

PASSWORDS = {"teacher": "teach-pass-1", "ada": "ada-pass-123", "bob": "bob-pass-456"}


class RecordingCloud(LocalCloud):
    """The local cloud seen as AWS sees it: the cloud records nothing for the class, so
    presence is what the class's own observer recorded (AwsCloud.presence does the same)."""

    def __init__(self, recording: Path) -> None:
        super().__init__(port=0, ws_port=0)
        self.recording = recording

    def observer(self) -> ObserverIdentity:
        return replace(super().observer(), record_to=self.recording)

    def presence(self, thing: str) -> Presence:
        store = Store(self.recording)
        try:
            return store.presence(thing)
        finally:
            store.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory):
    with RecordingCloud(tmp_path_factory.mktemp("observed") / "aws.db") as running:
        yield running


class Site:
    """The class site served by uvicorn in a thread, with its feed running."""

    def __init__(self, app, store: ClassStore, feed: ClassFeed, tls: dict | None = None) -> None:
        self.store, self.feed = store, feed
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=0,
                log_level="warning",
                # Connections a test left open (a keep-alive client) end the wait after 2 s.
                timeout_graceful_shutdown=2,
                **(tls or {}),
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, what="the site to start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://localhost:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def browser(self, username: str | None = None, verify: Any = True) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=10, verify=verify)
        if username is not None:
            form = client.get("/login").text
            token = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)
            client.post(
                "/login",
                data={"username": username, "password": PASSWORDS[username], "login_csrf": token},
            )
        return client

    def api(self, username: str) -> httpx.Client:
        """The notebooks' API as `username`, with a token from their password."""
        token = httpx.post(
            f"{self.url}/api/token",
            json={"username": username, "password": PASSWORDS[username]},
        ).json()["token"]
        return httpx.Client(
            base_url=f"{self.url}/api", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )


def serve_class(folder: Path, cloud: LocalCloud, https: bool = False) -> Site:
    """A class of a teacher, Ada and Bob, served (over HTTPS with the class's own web
    certificate, as `kit class serve` does, if `https`)."""
    store = ClassStore(folder / "class.db")
    for username, role in (("teacher", "instructor"), ("ada", "student"), ("bob", "student")):
        store.add_account(
            Account(username, username.title(), role), passwords.hash_password(PASSWORDS[username])
        )
    feed = ClassFeed(cloud)
    tls = None
    if https:
        made = web_certificate.ensure(folder, ["localhost", "127.0.0.1"])
        tls = {"ssl_certfile": str(made.certificate), "ssl_keyfile": str(made.key)}
    options = SiteOptions("https://localhost/" if https else "http://localhost/", https=https)
    running = Site(create_app(store, cloud, options, feed), store, feed, tls)
    wait_until(lambda: feed.connected, what="the feed's observer")
    return running


def close_class(running: Site, cloud: LocalCloud) -> None:
    running.stop()
    for thing in running.store.all_things():
        cloud.unregister(thing)
    running.store.close()


@pytest.fixture
def site(tmp_path: Path, cloud: LocalCloud) -> Iterator[Site]:
    running = serve_class(tmp_path / "class", cloud)
    yield running
    close_class(running, cloud)


@pytest.fixture
def https_site(tmp_path: Path, cloud: LocalCloud) -> Iterator[Site]:
    running = serve_class(tmp_path / "class", cloud, https=True)
    yield running
    close_class(running, cloud)


def own_device(site: Site, cloud: LocalCloud, folder: Path, thing: str, owner: str) -> Peer:
    """A device registered in the class for `owner`, connected to the broker."""
    files: DeviceFiles = make_device(folder, thing, cloud)
    site.store.claim(thing, owner)
    peer = connect(
        "localhost", cloud.broker_port, thing, files.cert_file, files.key_file, files.ca_file
    )
    assert peer.accepted
    return peer


def listening(peer: Peer, thing: str) -> Peer:
    """The board, subscribed to its LED topic as the sketch is."""
    peer.client.subscribe(f"things/{thing}/led", qos=1)
    wait_until(peer.subscribed.is_set, what="the board's subscription")
    return peer


def csrf_of(client: httpx.Client, path: str = "/devices") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def publish(peer: Peer, thing: str, temperature: float) -> None:
    payload = json.dumps({"temperature": temperature, "humidity": 40}, indent=2)
    peer.client.publish(f"things/{thing}/environment", payload, qos=1).wait_for_publish(5)


class Stream:
    """An EventSource as a browser runs one: reads frames on a thread of its own."""

    def __init__(
        self, client: httpx.Client, path: str, last_event_id: str | bytes | None = None
    ) -> None:
        self.events: list[dict] = []
        self.status = 0
        self.closed = threading.Event()
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self._thread = threading.Thread(target=self._read, args=(client, path, headers))
        self._thread.daemon = True
        self._thread.start()
        wait_until(lambda: self.status or self.closed.is_set(), what="the stream to answer")

    def _read(self, client: httpx.Client, path: str, headers: dict) -> None:
        try:
            with client.stream("GET", path, headers=headers, timeout=None) as response:
                self.status = response.status_code
                self.response = response
                frame: dict[str, str] = {}
                for line in response.iter_lines():
                    if line == "":
                        if "data" in frame:
                            self.events.append({**json.loads(frame["data"]), "event": frame})
                        frame = {}
                    elif not line.startswith(":"):
                        field, _, value = line.partition(": ")
                        frame[field] = value
        except httpx.HTTPError:
            pass
        finally:
            self.closed.set()

    def wait_for(self, count: int, kind: str | None = None) -> list[dict]:
        def matching() -> list[dict]:
            return [e for e in self.events if kind is None or e.get("kind") == kind]

        wait_until(lambda: len(matching()) >= count, what=f"{count} {kind or ''} events")
        return matching()

    def close(self) -> None:
        """Drop the connection as a lost WiFi does: at once, mid-stream."""
        stream = self.response.extensions["network_stream"]
        stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        assert self.closed.is_set()
