"""The local MQTT broker: MQTT 3.1.1 over mutual TLS, with AWS IoT Core's policy and limits.

A small broker of the kit's own, so that every rule is in code we can read and test: a
certificate from the local CA is required; who it is comes from the registry's principals table;
every publish, subscribe and delivery is checked against the device policy; a violation closes
the connection, as AWS does. It also keeps persistent sessions for an hour, publishes AWS's
lifecycle events, ends the connections of a certificate the moment it is revoked, closes sockets
that never finish TLS or never send CONNECT, and hands messages to the recorder without ever
writing to the database on its event loop. What it promises is listed in the README
("What the local cloud promises") and proven by tests/test_broker_parity.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import ssl
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as serve_websocket
from websockets.exceptions import ConnectionClosed

from kit.cloud import mqtt_codec as mqtt
from kit.cloud.mqtt_connection import MAX_PACKET, Connection
from kit.cloud.policy import CONNECT_TIMEOUT, PRESENCE_PREFIX, SESSION_EXPIRY, may
from kit.cloud.recorder import QUEUE_SIZE, Recorder
from kit.cloud.store import Principal, Store

log = logging.getLogger("kit.broker")

MAX_INFLIGHT = 100  # unacknowledged QoS 1 messages out to one client
MAX_QUEUED = 1000  # QoS 1 messages kept for one session beyond that (oldest dropped first)
MAX_QUEUED_BYTES = 8 * 1024 * 1024  # and at most this much payload (oldest dropped first)
HOUSEKEEPING_EVERY = 0.25  # seconds
COLLECT_AFTER = 100  # closed connections between two garbage collections


@dataclass
class BrokerSettings:
    """Where the broker listens, which files it uses, and how long things may take."""

    host: str
    port: int
    ws_port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    database: Path
    keep_days: float = 30
    connect_timeout: float = CONNECT_TIMEOUT
    session_expiry: float = SESSION_EXPIRY
    recorder_queue: int = QUEUE_SIZE
    ports: dict[str, int] = field(default_factory=dict)  # filled in once listening


@dataclass(eq=False)
class Session:
    """What the broker keeps for a client id: subscriptions and undelivered QoS 1 messages."""

    client_id: str
    principal: Principal
    clean: bool
    subscriptions: dict[str, int] = field(default_factory=dict)
    connection: Connection | None = None
    left: float = 0.0  # monotonic time the last connection ended
    inflight: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    queued: deque[tuple[str, bytes]] = field(default_factory=lambda: deque(maxlen=MAX_QUEUED))
    queued_bytes: int = 0
    identifier: str = field(default_factory=lambda: str(uuid.uuid4()))  # for lifecycle events
    _next_id: int = 0

    def deliver(self, topic: str, payload: bytes, qos: int) -> None:
        """Send now, or keep a QoS 1 message for a persistent session that is away."""
        connection = self.connection
        if connection is None:
            if qos and not self.clean:
                self._queue(topic, payload)
            return
        if not qos:
            connection.write(mqtt.publish(topic, payload, 0))
        elif len(self.inflight) >= MAX_INFLIGHT:
            self._queue(topic, payload)
        else:
            self._send(topic, payload)

    def _queue(self, topic: str, payload: bytes) -> None:
        """Keep a message for later, within the session's count and byte limits."""
        if len(self.queued) == MAX_QUEUED:
            self.queued_bytes -= len(self.queued[0][1])
        self.queued.append((topic, payload))
        self.queued_bytes += len(payload)
        while self.queued_bytes > MAX_QUEUED_BYTES:
            self.queued_bytes -= len(self.queued.popleft()[1])

    def acknowledged(self, packet_id: int) -> None:
        """A PUBACK: free the slot and send what waited for one."""
        self.inflight.pop(packet_id, None)
        while self.queued and len(self.inflight) < MAX_INFLIGHT and self.connection:
            topic, payload = self.queued.popleft()
            self.queued_bytes -= len(payload)
            self._send(topic, payload)

    def resume(self) -> None:
        """A persistent session reconnected: send again what was not acknowledged, then the rest."""
        assert self.connection is not None
        for packet_id, (topic, payload) in self.inflight.items():
            self.connection.write(mqtt.publish(topic, payload, 1, packet_id, dup=True))
        self.acknowledged(0)

    def _send(self, topic: str, payload: bytes) -> None:
        assert self.connection is not None
        packet_id = self._next_id
        while packet_id == 0 or packet_id in self.inflight:
            packet_id = packet_id % 65535 + 1
        self._next_id = packet_id
        self.inflight[packet_id] = (topic, payload)
        self.connection.write(mqtt.publish(topic, payload, 1, packet_id))


class Broker:
    """Sessions, subscriptions and routing, plus the listeners that feed them connections."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.store = Store(settings.database)
        self.recorder = Recorder(settings.database, settings.keep_days, settings.recorder_queue)
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self._exact: dict[str, dict[Session, int]] = {}
        self._wildcard: dict[str, dict[Session, int]] = {}
        self._servers: list[Any] = []
        self._housekeeping: asyncio.Task[None] | None = None
        self._registry_version = -1
        self._closed_since_collect = 0

    # Listening

    async def start(self) -> None:
        """Open the TLS and WebSocket listeners and start housekeeping."""
        context = server_context(self.settings)
        loop = asyncio.get_running_loop()
        tcp = await loop.create_server(
            lambda: _TlsLink(self),
            self.settings.host,
            self.settings.port,
            ssl=context,
            ssl_handshake_timeout=self.settings.connect_timeout,
            reuse_address=True,
        )
        ws = await serve_websocket(
            self._websocket_connected,
            self.settings.host,
            self.settings.ws_port,
            ssl=context,
            ssl_handshake_timeout=self.settings.connect_timeout,
            open_timeout=self.settings.connect_timeout,
            subprotocols=["mqtt"],  # type: ignore[list-item]
            compression=None,
            max_size=MAX_PACKET,
        )
        self._servers = [tcp, ws]
        self.settings.ports["default"] = tcp.sockets[0].getsockname()[1]
        self.settings.ports["ws"] = next(iter(ws.sockets)).getsockname()[1]
        self._housekeeping = asyncio.create_task(self._keep_house())

    async def shutdown(self) -> None:
        """Close every connection, stop listening, and write what the recorder still holds."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            connection.close("the local cloud is stopping")
        await asyncio.sleep(0)  # let the closes go out
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self.recorder.close()
        self.store.close()

    async def _websocket_connected(self, websocket: ServerConnection) -> None:
        link = _WebSocketLink(websocket)
        connection = self._open(link, websocket.transport, websocket.remote_address)
        try:
            async for message in websocket:
                if isinstance(message, str):
                    connection.close("a text frame (MQTT over WebSocket is binary)")
                    break
                connection.received(message)
                await link.reading.wait()
        except ConnectionClosed:
            pass
        finally:
            connection.lost()
            link.stop()

    def _open(self, link: Any, transport: Any, peer: Any) -> Connection:
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        address = peer[0] if isinstance(peer, tuple) else str(peer)
        connection = Connection(self, link, der, address)
        self.connections.add(connection)
        return connection

    def forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self._closed_since_collect += 1

    # Registry

    def principal_of(self, fingerprint: str) -> Principal | None:
        return self.store.principal(fingerprint)

    # Sessions

    def attach(self, connection: Connection, request: mqtt.Connect) -> bool:
        """Give an authenticated connection its session; return whether one was resumed."""
        assert connection.principal is not None
        old = self.sessions.get(request.client_id)
        if old is not None and old.connection is not None:
            # AWS: a second connection with the same client id disconnects the first.
            old.connection.close("a new connection took its client id", "DUPLICATE_CLIENTID")
        old = self.sessions.get(request.client_id)
        # Resuming needs the certificate that made the session (AWS keys by client id alone).
        resumable = (
            old is not None
            and not request.clean_session
            and old.principal.fingerprint == connection.principal.fingerprint
        )
        if old is not None and not resumable:
            self.drop(old)
        session = old if resumable and old is not None else None
        if session is None:
            session = Session(request.client_id, connection.principal, request.clean_session)
            self.sessions[request.client_id] = session
        session.clean = request.clean_session
        session.connection = connection
        connection.session = session
        return session is old

    def connected(self, connection: Connection, resumed: bool) -> None:
        """After CONNACK: announce the client and resend what its session kept."""
        self._presence(connection, "connected", {"ipAddress": connection.address})
        if resumed and connection.session is not None:
            connection.session.resume()

    def disconnected(self, connection: Connection, reason: str) -> None:
        """A connection ended: its will, the lifecycle event, and a clean session's end."""
        session = connection.session
        if session is None or session.connection is not connection:
            return
        session.connection = None
        session.left = time.monotonic()
        if session.clean:
            self.drop(session)
        will = connection.will
        connection.will = None
        active = self.store.principal(session.principal.fingerprint)
        if will is not None and active is not None and active.status == "ACTIVE":
            self.route(will.topic, will.payload, will.qos)
        self._presence(
            connection,
            "disconnected",
            {
                "clientInitiatedDisconnect": reason == "CLIENT_INITIATED_DISCONNECT",
                "disconnectReason": reason,
            },
        )

    def drop(self, session: Session) -> None:
        """Forget a session and its subscriptions."""
        self.unsubscribe(session, list(session.subscriptions))
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    # Subscriptions and routing

    def subscribe(self, session: Session, topic_filter: str, qos: int) -> None:
        session.subscriptions[topic_filter] = qos
        index = self._wildcard if "+" in topic_filter or "#" in topic_filter else self._exact
        index.setdefault(topic_filter, {})[session] = qos

    def unsubscribe(self, session: Session, filters: list[str]) -> None:
        for topic_filter in filters:
            session.subscriptions.pop(topic_filter, None)
            for index in (self._exact, self._wildcard):
                subscribers = index.get(topic_filter)
                if subscribers is not None:
                    subscribers.pop(session, None)
                    if not subscribers:
                        del index[topic_filter]

    def route(self, topic: str, payload: bytes, qos: int) -> None:
        """Deliver a message to every session subscribed to it that may receive it."""
        targets = dict(self._exact.get(topic, {}))
        for topic_filter, subscribers in self._wildcard.items():
            if mqtt.topic_matches(topic, topic_filter):
                for session, granted in subscribers.items():
                    targets[session] = max(granted, targets.get(session, 0))
        for session, granted in targets.items():
            # iot:Receive is checked at delivery, as AWS does.
            if may(session.principal, session.client_id, "receive", topic):
                session.deliver(topic, payload, min(qos, granted))

    def _presence(self, connection: Connection, event: str, extra: dict[str, Any]) -> None:
        """Publish AWS's lifecycle event for a connection's client id."""
        session = connection.session
        if session is None:
            return
        body = {
            "clientId": session.client_id,
            "timestamp": int(time.time() * 1000),
            "eventType": event,
            "sessionIdentifier": session.identifier,
            "principalIdentifier": session.principal.fingerprint,
            **extra,
            "versionNumber": 0,
        }
        self._announce(event, session.client_id, body)

    def connect_failed(self, connection: Connection, client_id: str) -> None:
        """AWS's lifecycle event for a CONNECT refused by the policy."""
        principal = connection.principal
        body = {
            "clientId": client_id,
            "timestamp": int(time.time() * 1000),
            "eventType": "connect_failed",
            "connectFailureReason": "AUTHORIZATION_FAILED",
            "principalIdentifier": principal.fingerprint if principal else "",
            "sessionIdentifier": str(uuid.uuid4()),
            "ipAddress": connection.address,
        }
        self._announce("connect_failed", client_id, body)

    def _announce(self, event: str, client_id: str, body: dict[str, Any]) -> None:
        # AWS sends no lifecycle events for client ids with wildcards; nor does the kit for
        # ones that would change the topic's shape.
        if client_id and not any(c in client_id for c in "+#/"):
            self.route(f"{PRESENCE_PREFIX}{event}/{client_id}", json.dumps(body).encode(), 1)

    # Housekeeping: timeouts, keep-alive, revocation, session expiry

    async def _keep_house(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_EVERY)
            try:
                self.sweep()
            except Exception:  # a bad sweep must not stop the next one
                log.exception("housekeeping failed")

    def sweep(self) -> None:
        """One pass of everything the broker does on a timer."""
        now = time.monotonic()
        for connection in list(self.connections):
            if connection.closed:
                continue
            if connection.session is None:
                if now - connection.opened > self.settings.connect_timeout:
                    connection.close("no CONNECT within the time allowed")
            elif now - connection.last_heard > 1.5 * connection.keepalive:
                connection.close("keep-alive timeout", "MQTT_KEEP_ALIVE_TIMEOUT")
        if self._closed_since_collect >= COLLECT_AFTER:
            # asyncio's TLS transports end in reference cycles, each holding a 256 KiB buffer;
            # left to the garbage collector's own pace, a flood of dead sockets doubles memory.
            self._closed_since_collect = 0
            gc.collect()
        version = self.store.registry_version()
        if version != self._registry_version:
            self._registry_version = version
            active = self.store.active_fingerprints()
            for session in list(self.sessions.values()):
                if session.principal.fingerprint in active:
                    continue
                if session.connection is not None:
                    session.connection.close("its certificate was revoked", "AUTH_ERROR")
                self.drop(session)
        for session in list(self.sessions.values()):
            expired = now - session.left > self.settings.session_expiry
            if session.connection is None and expired:
                self.drop(session)


def server_context(settings: BrokerSettings) -> ssl.SSLContext:
    """TLS for both listeners: a client certificate from the local CA is required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(settings.ca_file))
    context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class _TlsLink(asyncio.Protocol):
    """MQTT over TLS: an asyncio protocol feeding one Connection."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.transport: Any = None
        self.connection: Connection | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.connection = self.broker._open(self, transport, transport.get_extra_info("peername"))

    def data_received(self, data: bytes) -> None:
        assert self.connection is not None
        self.connection.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connection is not None:
            self.connection.lost()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()


class _WebSocketLink:
    """MQTT over WebSocket over TLS: binary messages in, a sender task out."""

    def __init__(self, websocket: ServerConnection) -> None:
        self.websocket = websocket
        self.reading = asyncio.Event()
        self.reading.set()
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._size = 0
        self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                data = await self._outgoing.get()
                self._size -= len(data)
                await self.websocket.send(data)

    def write(self, data: bytes) -> None:
        self._size += len(data)
        self._outgoing.put_nowait(data)

    def close(self) -> None:
        async def close_after_sending() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_drained(self), 2)
            await self.websocket.close()

        asyncio.get_running_loop().create_task(close_after_sending())

    def pause_reading(self) -> None:
        self.reading.clear()

    def resume_reading(self) -> None:
        self.reading.set()

    def get_write_buffer_size(self) -> int:
        return self._size

    def stop(self) -> None:
        self._sender.cancel()


async def _drained(link: _WebSocketLink) -> None:
    while link.get_write_buffer_size() > 0:
        await asyncio.sleep(0.01)


async def serve(
    settings: BrokerSettings, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run the broker until `stop` is set."""
    broker = Broker(settings)
    await broker.start()
    if ready is not None:
        ready.set()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await broker.shutdown()
