"""One client connection to the local broker: MQTT 3.1.1 as AWS IoT Core speaks it.

A `Connection` reads packets from a `Link` (a TLS socket or a WebSocket), checks each against
the registry, the policy and AWS's limits, and closes the connection on any violation without
acknowledging what broke the rule, as AWS does with MQTT 3.1.1. A CONNECT is decided from the
connection's own certificate and client id before any session is touched, so a refused CONNECT
changes nothing for anyone. Routing and sessions belong to the broker (kit.cloud.broker).

The log is written for an instructor, and a client must not be able to fill it: whatever a
client sent reaches it only through `printable` (short, printable text), and every line goes
through a `QuietLog`, which writes a few lines of each kind a second and counts the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from kit.certs import load_certificate
from kit.cloud import mqtt_codec as mqtt
from kit.cloud.local_ca import certificate_id
from kit.cloud.policy import (
    MAX_CLIENT_ID_BYTES,
    MAX_PAYLOAD,
    PUBLISHES_PER_SECOND,
    SUBSCRIPTIONS_PER_CONNECTION,
    SUBSCRIPTIONS_PER_REQUEST,
    may,
    may_connect,
    served_keepalive,
    topic_problem,
)
from kit.cloud.store import Principal, recorded
from kit.errors import MqttProtocolError

if TYPE_CHECKING:
    from kit.cloud.broker import Broker
    from kit.cloud.session import Session

# The largest packet worth reading: a full payload plus a topic and the headers around it.
MAX_PACKET = MAX_PAYLOAD + 2 + 4 * 256 + 2
MAX_WRITE_BUFFER = 4 * 1024 * 1024  # a client this far behind in reading is closed
LOGGED_CHARS = 80  # at most this much of any client-supplied text in one log line
LINES_PER_SECOND = 10  # log lines of one kind in a second; the rest are counted, not written


def printable(value: str, limit: int = LOGGED_CHARS) -> str:
    """Client-supplied text as a log line may show it: at most `limit` characters, each
    printable (others become '?'), and the full size when it was longer."""
    shown = "".join(c if c.isprintable() else "?" for c in value[:limit])
    if len(value) > limit:
        shown += f"... ({len(value.encode('utf-8', 'replace'))} bytes)"
    return shown


@dataclass
class _Window:
    """One second of one kind of log line: how many were written and how many held back."""

    start: float
    written: int = 0
    held: int = 0


@dataclass
class QuietLog:
    """A log that writes at most `per_second` lines of each kind a second, then one line saying
    how many more there were: a flood of refusals costs a few lines, not the disk."""

    logger: logging.Logger
    per_second: int = LINES_PER_SECOND
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, _Window] = field(default_factory=dict)

    def info(self, kind: str, message: str, *args: object) -> None:
        """Log `message % args` unless this second has had its lines of `kind` (a plural noun,
        "refused connections", which the summary line uses)."""
        now = self.clock()
        window = self._windows.get(kind)
        if window is None or now - window.start >= 1:
            if window is not None:
                self._summarize(kind, window)
            window = self._windows[kind] = _Window(now)
        if window.written < self.per_second:
            window.written += 1
            self.logger.info(message, *args)
        else:
            window.held += 1

    def flush(self, everything: bool = False) -> None:
        """Write the summaries of the seconds that have ended (or of all, when stopping)."""
        now = self.clock()
        for kind, window in list(self._windows.items()):
            if everything or now - window.start >= 1:
                self._summarize(kind, window)
                del self._windows[kind]

    def _summarize(self, kind: str, window: _Window) -> None:
        if window.held:
            self.logger.info(
                "... and %d more %s in that second (at most %d lines a second are written)",
                window.held,
                kind,
                self.per_second,
            )


class Link(Protocol):
    """What a connection needs from its transport (TLS socket or WebSocket)."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...


@dataclass(eq=False)
class Connection:
    """One network connection, from accept to close."""

    broker: Broker
    link: Link
    certificate: bytes | None  # the client's certificate (DER), verified by TLS
    address: str
    opened: float = field(default_factory=time.monotonic)
    last_heard: float = field(default_factory=time.monotonic)
    keepalive: int = 0
    session: Session | None = None
    principal: Principal | None = None
    will: mqtt.Will | None = None
    closed: bool = False
    reader: mqtt.PacketReader = field(default_factory=lambda: mqtt.PacketReader(MAX_PACKET))
    _packets: deque[tuple[int, int, bytes]] = field(default_factory=deque)
    _waiting: bool = False  # for room in the recorder's queue
    _out: list[bytes] = field(default_factory=list)
    _tokens: float = PUBLISHES_PER_SECOND
    _refilled: float = field(default_factory=time.monotonic)

    @property
    def client_id(self) -> str:
        return self.session.client_id if self.session is not None else "(not connected)"

    # Input

    def received(self, data: bytes) -> None:
        """Bytes from the link: read and handle every complete packet."""
        if self.closed:
            return
        self.last_heard = time.monotonic()
        try:
            self._packets.extend(self.reader.feed(data))
        except MqttProtocolError as error:
            self.close(str(error), error.reason)
            return
        self._handle_packets()

    def _handle_packets(self) -> None:
        while self._packets and not self._waiting and not self.closed:
            kind, flags, body = self._packets.popleft()
            try:
                self._handle(kind, flags, body)
            except MqttProtocolError as error:
                self.close(str(error), error.reason)

    def _handle(self, kind: int, flags: int, body: bytes) -> None:
        if self.session is None:
            if kind != mqtt.CONNECT:
                raise MqttProtocolError("the first packet was not CONNECT")  # MQTT-3.1.0-1
            self._connect(body)
        elif kind == mqtt.CONNECT:
            raise MqttProtocolError("a second CONNECT")  # MQTT-3.1.0-2; AWS: CLIENT_ERROR
        elif kind == mqtt.PUBLISH:
            self._publish(flags, body)
        elif kind == mqtt.PUBACK:
            self.session.acknowledged(mqtt.packet_id(body))
        elif kind == mqtt.SUBSCRIBE and flags == 0x02:
            self._subscribe(mqtt.parse_subscribe(body, with_qos=True))
        elif kind == mqtt.UNSUBSCRIBE and flags == 0x02:
            request = mqtt.parse_subscribe(body, with_qos=False)
            self.broker.unsubscribe(self.session, [f for f, _ in request.filters])
            self.write(mqtt.unsuback(request.packet_id))
        elif kind == mqtt.PINGREQ:
            self.write(mqtt.PINGRESP_PACKET)
        elif kind == mqtt.DISCONNECT and not flags and not body:
            self.will = None  # a clean goodbye: the will is discarded (MQTT-3.14.4-3)
            self.close("", reason="CLIENT_INITIATED_DISCONNECT")
        elif kind in (mqtt.PUBREC, mqtt.PUBREL, mqtt.PUBCOMP):
            raise MqttProtocolError("QoS 2 flow (AWS IoT supports QoS 0 and 1)")
        else:
            raise MqttProtocolError(f"unexpected packet type {kind} (flags {flags})")

    # CONNECT

    def _connect(self, body: bytes) -> None:
        request = mqtt.parse_connect(body)
        if (request.protocol, request.level) != ("MQTT", 4):
            self._refuse(request.client_id, mqtt.BAD_PROTOCOL, "not MQTT 3.1.1")
            return
        code, why = self._connect_problem(request)
        if code:
            self._refuse(request.client_id, code, why)
            return
        self.keepalive = served_keepalive(request.keepalive)
        self.will = request.will
        present = self.broker.attach(self, request)
        self.broker.quiet.info(
            "accepted connections",
            "accepted %s (%s, certificate CN %s)",
            printable(request.client_id),
            self.principal.role if self.principal else "?",
            printable(self.common_name),
        )
        self.write(mqtt.connack(present, mqtt.ACCEPTED))
        self.broker.connected(self, present)

    def _connect_problem(self, request: mqtt.Connect) -> tuple[int, str]:
        """(CONNACK code, reason) when the CONNECT must be refused, else (0, '')."""
        size = len(request.client_id.encode("utf-8"))
        if size > MAX_CLIENT_ID_BYTES:
            return mqtt.IDENTIFIER_REJECTED, (
                f"a client id of {size} bytes (AWS allows {MAX_CLIENT_ID_BYTES})"
            )
        if self.certificate is None:
            return mqtt.NOT_AUTHORIZED, "no client certificate"
        principal = self.broker.principal_of(certificate_id(self.certificate))
        if principal is None:
            return mqtt.NOT_AUTHORIZED, "certificate not registered"
        self.principal = principal
        if not may_connect(principal, request.client_id, self.common_name):
            return mqtt.NOT_AUTHORIZED, (
                f"the certificate ({principal.role} {printable(principal.name)}, "
                f"{principal.status}) may not connect as {printable(request.client_id)!r}"
            )
        will = request.will
        if will is not None:
            problem = _topic_name_problem(will.topic)
            if problem:
                return mqtt.NOT_AUTHORIZED, f"will {problem}"
            if will.retain:
                return mqtt.NOT_AUTHORIZED, "retained will (the policy grants no iot:RetainPublish)"
            if will.qos == 2:
                return mqtt.NOT_AUTHORIZED, "will at QoS 2 (AWS IoT supports QoS 0 and 1)"
            if len(will.payload) > MAX_PAYLOAD:
                return mqtt.NOT_AUTHORIZED, f"will payload over {MAX_PAYLOAD} bytes"
            if not may(principal, request.client_id, "publish", will.topic):
                return mqtt.NOT_AUTHORIZED, (
                    f"will on {printable(will.topic)}, where it may not publish"
                )
        return 0, ""

    def _refuse(self, client_id: str, code: int, why: str) -> None:
        """CONNACK with a refusal, then close (AWS may just close; clients see both as refused)."""
        # An over-long client id is never written out, not even shortened: only its size.
        too_long = len(client_id.encode("utf-8")) > MAX_CLIENT_ID_BYTES
        shown = "a CONNECT" if too_long else repr(printable(client_id))
        self.broker.quiet.info("refused connections", "refused %s: %s", shown, why)
        if code == mqtt.NOT_AUTHORIZED:
            self.broker.connect_failed(self, client_id)
        self.write(mqtt.connack(False, code))
        self.close("")

    @cached_property
    def common_name(self) -> str:
        """The CN of the client's certificate (parsed once, when first asked)."""
        return load_certificate(self.certificate).common_name if self.certificate else ""

    # PUBLISH and SUBSCRIBE

    def _publish(self, flags: int, body: bytes) -> None:
        message = mqtt.parse_publish(flags, body)
        assert self.session is not None and self.principal is not None
        if message.qos == 2:
            raise MqttProtocolError("publish at QoS 2 (AWS IoT supports QoS 0 and 1)")
        problem = _topic_name_problem(message.topic)
        if problem:
            raise MqttProtocolError(f"publish to a {problem}")
        if len(message.payload) > MAX_PAYLOAD:
            raise MqttProtocolError(f"payload of {len(message.payload)} bytes (AWS: 128 KB)")
        if message.retain:
            raise MqttProtocolError(
                f"retained publish to {printable(message.topic)} (the policy grants no "
                "iot:RetainPublish)",
                "AUTH_ERROR",
            )
        if not may(self.principal, self.session.client_id, "publish", message.topic):
            raise MqttProtocolError(
                f"publish to {printable(message.topic)} is not allowed", "AUTH_ERROR"
            )
        if not self._take_token():
            # AWS discards a publish over the rate and keeps the connection, but with MQTT
            # 3.1.1 sends no PUBACK for it, so each one holds a slot of the sender's in-flight
            # window for good (paho: for the rest of the session). The kit acknowledges what it
            # discards: the window never leaks (tests/test_broker_parity.py, publish_rate).
            self.broker.quiet.info(
                "discarded publishes",
                "discarded a publish from %s: over %d a second (acknowledged, not delivered)",
                printable(self.client_id),
                PUBLISHES_PER_SECOND,
            )
            if message.qos:
                self.write(mqtt.puback(message.packet_id))
            return
        self.broker.route(message.topic, message.payload, message.qos)
        received = time.time()
        if recorded(message.topic) and not self.broker.recorder.offer(
            message.topic, message.payload, received
        ):
            self._wait_for_recorder(message, received)
            return
        if message.qos:
            self.write(mqtt.puback(message.packet_id))

    def _wait_for_recorder(self, message: mqtt.Publish, received: float) -> None:
        """The recorder is full: read nothing more from this publisher until it has room."""
        self._waiting = True
        self.link.pause_reading()
        put = asyncio.get_running_loop().run_in_executor(
            None, self.broker.recorder.put, message.topic, message.payload, received
        )

        def resume(_: object) -> None:
            self._waiting = False
            self.link.resume_reading()  # also when closed: a WebSocket reader waits for this
            if self.closed:
                return
            if message.qos:
                self.write(mqtt.puback(message.packet_id))
            self._handle_packets()

        put.add_done_callback(resume)

    def _subscribe(self, request: mqtt.Subscribe) -> None:
        assert self.session is not None and self.principal is not None
        if len(request.filters) > SUBSCRIPTIONS_PER_REQUEST:
            raise MqttProtocolError(
                f"{len(request.filters)} filters in one SUBSCRIBE (AWS: at most "
                f"{SUBSCRIPTIONS_PER_REQUEST})"
            )
        for topic_filter, qos in request.filters:
            if not mqtt.valid_filter(topic_filter) or topic_problem(topic_filter):
                raise MqttProtocolError(f"malformed topic filter {printable(topic_filter)!r}")
            if qos == 2:  # AWS sends no SUBACK for QoS 2; the client would wait forever
                raise MqttProtocolError("subscribe at QoS 2 (AWS IoT supports QoS 0 and 1)")
            if not may(self.principal, self.session.client_id, "subscribe", topic_filter):
                raise MqttProtocolError(
                    f"subscribe to {printable(topic_filter)} is not allowed", "AUTH_ERROR"
                )
        wanted = set(self.session.subscriptions) | {f for f, _ in request.filters}
        if len(wanted) > SUBSCRIPTIONS_PER_CONNECTION:
            raise MqttProtocolError(
                f"more than {SUBSCRIPTIONS_PER_CONNECTION} subscriptions on one connection"
            )
        for topic_filter, qos in request.filters:
            self.broker.subscribe(self.session, topic_filter, qos)
        self.write(mqtt.suback(request.packet_id, [qos for _, qos in request.filters]))

    def _take_token(self) -> bool:
        """A token bucket: 100 publishes per second, bursts up to 100."""
        now = time.monotonic()
        self._tokens = min(
            PUBLISHES_PER_SECOND, self._tokens + (now - self._refilled) * PUBLISHES_PER_SECOND
        )
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    # Output and closing

    def write(self, data: bytes) -> None:
        """Queue bytes; everything written in one turn of the event loop goes out together."""
        if self.closed:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self.link.write(data)
            if not self.closed and self.link.get_write_buffer_size() > MAX_WRITE_BUFFER:
                # A client that asks and never reads must not make the broker hold its answers.
                self.close("it reads too slowly to keep up", "THROTTLED")

    def close(self, why: str, reason: str = "SERVER_INITIATED_DISCONNECT") -> None:
        """Close the connection (what is already written still goes out) and leave the session."""
        if self.closed:
            return
        if why:
            # `why` may quote what the client sent; each quote is short, and so is the line.
            self.broker.quiet.info(
                "closed connections",
                "closed %s: %s",
                printable(self.client_id),
                printable(why, 4 * LOGGED_CHARS),
            )
        self._flush()
        self.closed = True
        self.link.close()
        self.broker.disconnected(self, reason)

    def lost(self) -> None:
        """The link closed under us (the client vanished or closed the socket)."""
        if not self.closed:
            self.closed = True
            self.broker.disconnected(self, "CONNECTION_LOST")
        self.broker.forget(self)


def _topic_name_problem(topic: str) -> str | None:
    """Why a topic name cannot be published to, or None."""
    if not topic:
        return "empty topic"  # MQTT-4.7.3-1
    if "+" in topic or "#" in topic:
        return f"topic name with a wildcard ({printable(topic)})"  # MQTT-3.3.2-2
    return topic_problem(topic)
