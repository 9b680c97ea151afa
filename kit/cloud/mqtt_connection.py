"""One client connection to the local broker: MQTT 3.1.1 as AWS IoT Core speaks it.

A `Connection` reads packets from a `Link` (a TLS socket or a WebSocket), checks each against
the registry, the policy and AWS's limits, and closes the connection on any violation without
acknowledging what broke the rule, as AWS does with MQTT 3.1.1. A CONNECT is decided from the
connection's own certificate and client id before any session is touched, so a refused CONNECT
changes nothing for anyone. Routing and sessions belong to the broker (kit.cloud.broker).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
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

log = logging.getLogger("kit.broker")

# The largest packet worth reading: a full payload plus a topic and the headers around it.
MAX_PACKET = MAX_PAYLOAD + 2 + 4 * 256 + 2
MAX_WRITE_BUFFER = 4 * 1024 * 1024  # a client this far behind in reading is closed


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
        log.info(
            "accepted %s (%s, certificate CN %s)",
            request.client_id,
            self.principal.role if self.principal else "?",
            self.common_name,
        )
        self.write(mqtt.connack(present, mqtt.ACCEPTED))
        self.broker.connected(self, present)

    def _connect_problem(self, request: mqtt.Connect) -> tuple[int, str]:
        """(CONNACK code, reason) when the CONNECT must be refused, else (0, '')."""
        if len(request.client_id.encode("utf-8")) > MAX_CLIENT_ID_BYTES:
            return mqtt.IDENTIFIER_REJECTED, f"client id over {MAX_CLIENT_ID_BYTES} bytes"
        if self.certificate is None:
            return mqtt.NOT_AUTHORIZED, "no client certificate"
        principal = self.broker.principal_of(certificate_id(self.certificate))
        if principal is None:
            return mqtt.NOT_AUTHORIZED, "certificate not registered"
        self.principal = principal
        if not may_connect(principal, request.client_id, self.common_name):
            return mqtt.NOT_AUTHORIZED, (
                f"the certificate ({principal.role} {principal.name}, {principal.status}) "
                f"may not connect as {request.client_id!r}"
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
                return mqtt.NOT_AUTHORIZED, f"will on {will.topic}, where it may not publish"
        return 0, ""

    def _refuse(self, client_id: str, code: int, why: str) -> None:
        """CONNACK with a refusal, then close (AWS may just close; clients see both as refused)."""
        log.info("refused %r: %s", client_id, why)
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
                f"retained publish to {message.topic} (the policy grants no iot:RetainPublish)",
                "AUTH_ERROR",
            )
        if not may(self.principal, self.session.client_id, "publish", message.topic):
            raise MqttProtocolError(f"publish to {message.topic} is not allowed", "AUTH_ERROR")
        if not self._take_token():
            log.info("discarded a publish from %s: over 100 per second", self.client_id)
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
                raise MqttProtocolError(f"malformed topic filter {topic_filter!r}")
            if qos == 2:  # AWS sends no SUBACK for QoS 2; the client would wait forever
                raise MqttProtocolError("subscribe at QoS 2 (AWS IoT supports QoS 0 and 1)")
            if not may(self.principal, self.session.client_id, "subscribe", topic_filter):
                raise MqttProtocolError(f"subscribe to {topic_filter} is not allowed", "AUTH_ERROR")
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
            log.info("closed %s: %s", self.client_id, why)
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
        return f"topic name with a wildcard ({topic})"  # MQTT-3.3.2-2
    return topic_problem(topic)
