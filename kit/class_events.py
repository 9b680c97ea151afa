"""Watching devices through the class server: its Server-Sent Events in place of MQTT.

In class mode a student holds no observer identity: the class server's stream (filtered to the
student's own devices) is what a notebook reads. Each event is handed on as the MQTT message
it stands for, so kit.telemetry keeps, decodes and counts it exactly as it does a broker's.
The stream reconnects by itself, with the last event id it saw, as a browser's EventSource.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from kit.cloud import ObserverIdentity
from kit.cloud.class_cloud import pinned
from kit.cloud.policy import PRESENCE_PREFIX
from kit.errors import TelemetryError

Arrived = Callable[[str, bytes, float], None]  # topic, payload, when
REFUSALS = {
    401: "The class server no longer accepts this computer's login (your teacher ended it, or "
    "your password changed): run course.use(cloud='class', ...) again.",
    404: "That device is not yours on the class server: course.look_inside() shows yours.",
    429: "You have too many live pages open on the class server: close some (other notebooks' "
    "dashboards, browser tabs), then run this cell again.",
}


def as_message(kind: str, event: dict[str, Any]) -> tuple[str, bytes] | None:
    """The MQTT topic and payload a class event stands for (None: not one to keep)."""
    thing = str(event.get("thing", ""))
    if kind == "reading":
        payload = {"temperature": event["temperature"], "humidity": event["humidity"]}
        if "sent" in event:
            payload["sent"] = event["sent"]
        return f"things/{thing}/environment", json.dumps(payload).encode()
    if kind == "led":
        return f"things/{thing}/led/state", str(event["value"]).encode()
    if kind == "rejected":
        return str(event["topic"]), str(event["payload"]).encode()
    if kind == "presence":
        state = "connected" if event.get("connected") else "disconnected"
        return f"{PRESENCE_PREFIX}{state}/{thing}", b"{}"
    return None


class ClassEvents:
    """The class server's stream of one device (or all of the student's), on a thread."""

    def __init__(
        self,
        observer: ObserverIdentity,
        thing: str | None,
        arrived: Arrived,
        connected: threading.Event,
        lost: Callable[[], None] = lambda: None,
    ) -> None:
        """`arrived` gets each message, `connected` is set while the stream is open, and
        `lost()` is called each time it closes."""
        self.observer, self.thing = observer, thing
        self._arrived, self.connected, self._lost = arrived, connected, lost
        self._stop = threading.Event()
        self.refused = ""  # why the server last refused the stream, for the student
        self._thread: threading.Thread | None = None
        self._last_id: str | None = None
        self._client = httpx.Client(
            base_url=observer.host,
            verify=pinned(str(observer.ca_file)),
            headers={"Authorization": f"Bearer {observer.token}"},
            timeout=httpx.Timeout(10.0, read=60.0),  # the server says something every 15 s
        )

    def start(self, timeout: float) -> None:
        self._thread = threading.Thread(target=self._run, name="kit-class-events", daemon=True)
        self._thread.start()
        if not self.connected.wait(timeout):
            self.stop()
            raise TelemetryError(
                self.refused
                or f"The class server at {self.observer.host} did not open the live stream in "
                "time. Is it running? Ask your teacher; course.look_inside() shows the settings."
            )

    def stop(self) -> None:
        self._stop.set()
        self._client.close()

    def led(self, thing: str, value: int) -> None:
        """Ask the class server to set `thing`'s LED, on a thread: never blocks the caller."""

        def send() -> None:
            # The device's led/state answer (or its absence) tells the student what came of it.
            with contextlib.suppress(httpx.HTTPError):
                self._client.post(f"/api/things/{thing}/led", json={"value": value})

        threading.Thread(target=send, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # Dropped, or a frame the kit cannot read: reconnect.
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                self._follow()
            self.connected.clear()
            self._lost()
            # Refused (a revoked login, too many pages): ask again now and then, not at once.
            self._stop.wait(30.0 if self.refused else 2.0)

    def _follow(self) -> None:
        """One connection: read frames until the stream ends."""
        path = f"/api/things/{self.thing or '*'}/events"
        headers = {"Last-Event-ID": self._last_id} if self._last_id else {}
        with self._client.stream("GET", path, headers=headers) as response:
            if response.status_code != 200:
                self.refused = REFUSALS.get(
                    response.status_code,
                    f"The class server refused the live stream (HTTP {response.status_code}).",
                )
                return
            self.refused = ""
            self.connected.set()
            frame: dict[str, str] = {}
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line:
                    name, _, value = line.partition(":")
                    frame[name] = value.removeprefix(" ")
                    continue
                self._handle(frame)
                frame = {}

    def _handle(self, frame: dict[str, str]) -> None:
        kind = frame.get("event", "")
        if kind == "reload":
            self._last_id = None  # a gap the server cannot fill: follow from now on
            return
        if "data" not in frame:
            return
        event = json.loads(frame["data"])
        self._last_id = frame.get("id", self._last_id)
        message = as_message(kind, event)
        if message is not None:
            # Stamped on arrival by this computer's clock, as the broker's messages are: "what
            # came since I asked" must not depend on the class server's clock agreeing with it.
            self._arrived(*message, time.time())
