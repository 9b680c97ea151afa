"""Telemetry: watch one thing or a whole class, decode what devices send, command LEDs.

Notebooks and dashboards connect with the cloud's observer identity, never a device's. The
sketch's JSON arrives pretty-printed over several lines; anything that is not JSON, or lacks a
field, is counted and kept but never crashes the plot. History is backfilled from the recorder
before going live. paho's network thread only appends to bounded buffers: widgets read them
from the kernel's own thread. Of a payload no buffer keeps more than the recorder does
(STORED_BYTES): a device flooding 128 KB messages costs a watcher 2 KB each.

LED commands share one connection (for the class server, the whole class's) through
kit.led_commands, fair between devices.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import secrets
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from kit.certs import validate_device_name
from kit.class_events import ClassEvents
from kit.cloud import ObserverIdentity
from kit.cloud.policy import OBSERVER_ID_PREFIX, PRESENCE_PREFIX
from kit.cloud.store import STORED_BYTES, Message, Store, recorded, shortened
from kit.errors import KitError, TelemetryError
from kit.led_commands import LED_WINDOW, LedCommands

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reading:
    """One environment message: when it arrived and what it said."""

    thing: str
    time: float
    temperature: float  # degrees Fahrenheit
    humidity: float  # percent
    sent: float | None = None  # when the device sent it, where it says (benchmark firmware)


@dataclass(frozen=True)
class LedState:
    """The brightness a device reported it applied."""

    thing: str
    time: float
    value: int


@dataclass(frozen=True)
class Rejected:
    """A message that could not be decoded, with the reason."""

    thing: str
    time: float
    topic: str
    payload: bytes
    reason: str


@dataclass(frozen=True)
class Lifecycle:
    """The broker saw a device connect (or leave): its lifecycle event."""

    thing: str
    time: float
    connected: bool


Event = Reading | LedState | Rejected | Lifecycle


def decode(topic: str, payload: bytes, received: float) -> Event | None:
    """Turn one message into a Reading, a LedState or a Rejected (None for other topics)."""
    levels = topic.split("/")
    if len(levels) < 3 or levels[0] != "things":
        return None
    thing, rest = levels[1], "/".join(levels[2:])
    if rest == "environment":
        return _reading(thing, received, topic, payload)
    if rest == "led/state":
        text = payload.decode("utf-8", errors="replace").strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 3 and int(text) <= 100):
            reason = "not a whole number from 0 to 100"
            return Rejected(thing, received, topic, payload[:STORED_BYTES], reason)
        return LedState(thing, received, int(text))
    return None


def _reading(thing: str, received: float, topic: str, payload: bytes) -> Event:
    """An environment message as a Reading, or Rejected with the reason (never raises)."""

    def rejected(reason: str) -> Rejected:
        # Kept, shown and recorded at most this much: the rest was never a reading.
        return Rejected(thing, received, topic, payload[:STORED_BYTES], reason)

    try:
        data = json.loads(payload)
    # RecursionError: "[[[[..." nested thousands deep.
    except (ValueError, UnicodeDecodeError, RecursionError):
        return rejected("not JSON")
    if not isinstance(data, dict):
        return rejected("not a JSON object")
    for field in ("temperature", "humidity"):
        if field not in data:
            return rejected(f"no {field} field")
    try:
        values = float(data["temperature"]), float(data["humidity"])
    except (TypeError, ValueError):
        return rejected("not a number")
    except OverflowError:  # a whole number of 400 digits
        return rejected("not a finite number")
    if not all(math.isfinite(value) for value in values):
        return rejected("not a finite number")
    sent = data.get("sent")
    stamp = float(sent) if isinstance(sent, (int, float)) and math.isfinite(sent) else None
    return Reading(thing, received, *values, sent=stamp)


def check_brightness(value: int) -> int:
    """An LED brightness 0-100, or a TelemetryError that says so."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise TelemetryError(
            f"The LED brightness must be a whole number from 0 to 100, not {value!r}."
        )
    return value


class Telemetry:
    """A live connection watching `thing` (or every thing) through the observer identity."""

    def __init__(
        self,
        observer: ObserverIdentity,
        thing: str | None = None,
        keep: int = 5000,
        on_event: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.time,
        transport: Literal["tcp", "websockets", "events"] | None = None,
        record_to: Path | None = None,
        renew: Callable[[], ObserverIdentity] | None = None,
    ) -> None:
        """Watch `thing` (None: every thing), over the observer's transport unless `transport`
        ("tcp" or "websockets") says otherwise.

        What arrives is kept in `record_to` (default: the observer's `record_to`), a recorder
        database of the local cloud's format: on AWS, where no recorder runs for us, that is
        where the next session's history comes from. `renew` gives a fresh identity before
        each reconnection where the old one expires (AWS signs its WebSocket URL for an hour).
        """
        transport = transport or observer.transport
        record_to = record_to or observer.record_to
        if thing is not None:
            validate_device_name(thing)
        self.observer, self.thing = observer, thing
        self.events: deque[Event] = deque(maxlen=keep)
        self.raw: deque[tuple[float, str, bytes]] = deque(maxlen=200)  # the message console
        self.received = 0
        self.rejected = 0
        self.last_message: float | None = None
        # thing -> when its latest message arrived (live or recorded): read 10 times a second
        self._last_of: dict[str, float] = {}
        # client id -> (connected, when): the lifecycle events seen since start()
        self.presence: dict[str, tuple[bool, float]] = {}
        self.connected = threading.Event()
        self._listeners: list[Callable[[Event], None]] = [on_event] if on_event else []
        self._clock = clock
        self._lock = threading.Lock()
        self._record_to = record_to
        self._renew = renew
        self._recorder: Store | None = None  # opened on paho's thread, which alone writes
        client_id = observer.client_id_prefix + secrets.token_hex(4)
        self.transport = transport
        # In class mode the class server's stream stands in for the broker (the paho client
        # below is then made but never connected).
        self._events = (
            ClassEvents(observer, thing, self.arrived, self.connected, self._forget_presence)
            if transport == "events"
            else None
        )
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            transport="tcp" if transport == "events" else transport,
        )
        if transport == "websockets":
            self.client.ws_set_options(path=observer.ws_path)
        context = ssl.create_default_context(cafile=str(observer.ca_file))
        if observer.cert_file is not None and observer.key_file is not None:
            context.load_cert_chain(str(observer.cert_file), str(observer.key_file))
        self.client.tls_set_context(context)
        # paho passes (client, userdata, flags, reason, properties); only the reason matters.
        self.client.on_connect = lambda c, u, f, reason, p: self._on_connect(reason)
        self.client.on_disconnect = lambda c, u, f, r, p: self._on_disconnect()
        self.client.on_message = self._on_message
        self.leds = LedCommands(self._send_led)
        # paho passes (client, userdata, mid, reason, properties): the PUBACK of `mid`.
        self.client.on_publish = lambda c, u, mid, r, p: self.leds.acknowledged(mid)
        self.client.max_inflight_messages_set(LED_WINDOW)
        self.client.reconnect_delay_set(1, 5)

    def listen(self, callback: Callable[[Event], None]) -> None:
        """Call `callback(event)` for each decoded event, on paho's thread (keep it short)."""
        self._listeners.append(callback)

    @property
    def topic_filter(self) -> str:
        return f"things/{self.thing}/#" if self.thing else "things/#"

    @property
    def presence_filter(self) -> str:
        """The broker's lifecycle events for the watched device (or every client)."""
        return f"{PRESENCE_PREFIX}+/{self.thing or '+'}"

    def start(self, timeout: float = 10.0) -> Telemetry:
        """Connect and subscribe; raise with the reason if the broker cannot be reached."""
        if self._events is not None:
            self._events.start(timeout)
            return self
        port = self.observer.ws_port if self.transport == "websockets" else self.observer.port
        try:
            self.client.connect(self.observer.host, port, keepalive=30)
        except OSError as error:
            raise TelemetryError(
                f"Cannot reach the broker at {self.observer.host}:{port} ({error}). Is the "
                "local cloud running (course.start() in notebook 00, or `kit cloud up`)? On a "
                "campus network, is the port blocked?"
            ) from None
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.stop()
            raise TelemetryError("The broker did not accept the observer connection in time.")
        return self

    def stop(self) -> None:
        self.leds.close()
        if self._events is not None:
            self._events.stop()
            return
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Telemetry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def backfill(self, messages: list[Message]) -> int:
        """Add recorded messages (kit.cloud.store.Message) before the live ones; return how many."""
        count = 0
        with self._lock:
            for message in messages:
                event = decode(message.topic, message.payload, message.received)
                if event is not None and not isinstance(event, Rejected):
                    self.events.append(event)
                    latest = self._last_of.get(event.thing, event.time)
                    self._last_of[event.thing] = max(latest, event.time)
                    count += 1
            # Live events may have arrived before the history did: keep them all in time order.
            ordered = sorted(self.events, key=lambda e: e.time)
            self.events.clear()
            self.events.extend(ordered)
        return count

    def readings(self, thing: str | None = None, since: float | None = None) -> list[Reading]:
        """The readings kept (of `thing`), recorded and live; with `since` (Unix time) only
        those that arrived from then on."""
        with self._lock:
            return [
                e
                for e in self.events
                if isinstance(e, Reading)
                and (thing is None or e.thing == thing)
                and (since is None or e.time >= since)
            ]

    def last_message_of(self, thing: str) -> float | None:
        """When the latest message of `thing` arrived, live or recorded (None: none yet)."""
        with self._lock:
            return self._last_of.get(thing)

    def led_state(self, thing: str) -> int | None:
        """The last brightness the device reported, or None."""
        answer = self.led_answer(thing)
        return None if answer is None else answer.value

    def led_answer(self, thing: str, since: float | None = None) -> LedState | None:
        """The device's last led/state message (from `since` on, Unix time), or None."""
        with self._lock:
            for event in reversed(self.events):
                if (
                    isinstance(event, LedState)
                    and event.thing == thing
                    and (since is None or event.time >= since)
                ):
                    return event
        return None

    def board_connected(self, thing: str) -> tuple[bool, float] | None:
        """Whether the broker last said `thing` connected or left, and when; None when no
        lifecycle event of it arrived since start()."""
        with self._lock:
            return self.presence.get(thing)

    def led(self, thing: str, value: int, first: bool = False) -> None:
        """Ask a device to set its LED to `value` percent (0-100), without waiting.

        The command goes out at QoS 1 from LedCommands' thread (again after a reconnect), in
        place of one still waiting for the same device; the slider's callback runs on the
        kernel's event loop, which must never block on the network. `first`: before every
        other device's (every LED off). The device's answer arrives as a led/state event.
        """
        validate_device_name(thing)
        check_brightness(value)
        if self._events is not None:
            self._events.led(thing, value)
            return
        self.leds.ask(thing, value, first)

    def _send_led(self, thing: str, value: int) -> int:
        """Publish one LED command; its message id."""
        return self.client.publish(f"things/{thing}/led", str(value), qos=1).mid

    def _on_connect(self, reason: ReasonCode) -> None:
        """Subscribe (again, after a reconnect) once the broker accepted the connection."""
        if not reason.is_failure:
            self.client.subscribe([(self.topic_filter, 1), (self.presence_filter, 1)])
            self.connected.set()

    def _on_disconnect(self) -> None:
        """Note the loss; sign a new URL for the reconnection if the old one may have expired."""
        self.connected.clear()
        self._forget_presence()
        if self._renew is not None and self.transport == "websockets":
            # KitError: no credentials this moment; the next reconnection signs again.
            with contextlib.suppress(KitError):
                self.client.ws_set_options(path=self._renew().ws_path)

    def _forget_presence(self) -> None:
        """The connection is lost: who is connected is unknown until the broker says again."""
        with self._lock:
            self.presence.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.arrived(message.topic, bytes(message.payload), self._clock())

    def arrived(self, topic: str, payload: bytes, now: float) -> None:
        """Keep one message as the broker (or the class server's stream) delivered it."""
        if self._record_to is not None and recorded(topic):
            if self._recorder is None:
                self._recorder = Store(self._record_to)
            for thing in self._recorder.record_many([shortened(topic, payload, now)]).full:
                log.warning(
                    "%s reached its storage quota in %s: its oldest recorded messages are "
                    "forgotten to make room (said again in an hour if it goes on).",
                    thing,
                    self._record_to,
                )
        if topic.startswith(PRESENCE_PREFIX):
            # A lifecycle event: who connected or left, not a message of the device's own.
            kind, _, client_id = topic[len(PRESENCE_PREFIX) :].partition("/")
            if kind not in ("connected", "disconnected"):
                return  # connect_failed: a refused try changes nothing about the device
            with self._lock:
                self.presence[client_id] = (kind == "connected", now)
            if not client_id.startswith(OBSERVER_ID_PREFIX):  # AWS tells of observers too
                self._tell(Lifecycle(client_id, now, kind == "connected"))
            return
        event = decode(topic, payload, now)
        with self._lock:
            self.raw.append((now, topic, payload[:STORED_BYTES]))
            self.received += 1
            self.last_message = now
            levels = topic.split("/")
            if len(levels) >= 3 and levels[0] == "things":
                self._last_of[levels[1]] = now
            if event is None:
                return
            if isinstance(event, Rejected):
                self.rejected += 1
            self.events.append(event)
        self._tell(event)

    def _tell(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not end paho's thread (and the watch)
                log.exception("A telemetry listener failed on %s", event)
