"""The local MQTT broker: MQTT 3.1.1 over mutual TLS, with AWS IoT Core's policy and limits.

A small broker of the kit's own, so that every rule is in code we can read and test: a
certificate from the local CA is required, and one the registry does not hold as ACTIVE is
refused as soon as TLS is done, before any MQTT is read; who it is comes from the registry's
principals table; every publish, subscribe and delivery is checked against the device policy;
a violation closes the connection, as AWS does. It also keeps persistent sessions for an hour,
publishes AWS's lifecycle events, ends the connections of a certificate the moment it is
revoked, closes sockets that never finish TLS or never send CONNECT, and hands messages to the
recorder without ever writing to the database on its event loop. Its log stays a few short
lines a second whatever clients send (mqtt_connection.QuietLog). What it promises is listed in
the README ("What the local cloud promises") and proven by tests/test_broker_parity.py.
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
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

from websockets.asyncio.server import serve as serve_websocket

from kit.cloud import mqtt_codec as mqtt
from kit.cloud.local_ca import certificate_id
from kit.cloud.mqtt_connection import MAX_PACKET, Connection, Link, QuietLog
from kit.cloud.mqtt_links import TlsLink, serve_websocket_client
from kit.cloud.options import LocalOptions
from kit.cloud.policy import PRESENCE_PREFIX, may
from kit.cloud.recorder import Recorder
from kit.cloud.session import Session
from kit.cloud.store import DEVICE, Principal, Store
from kit.ports import listen_on

log = logging.getLogger("kit.broker")

HOUSEKEEPING_EVERY = 0.25  # seconds
COLLECT_AFTER = 100  # closed connections between two garbage collections
# Who may hold a port the broker wants, and what to do: said by its listeners and its probe.
PORT_HOLDER = "another broker, such as Mosquitto, or a second kit cloud?"
PORT_FIX = "Stop that program, or choose another port with --port (and --ws-port)."


@dataclass(frozen=True, kw_only=True)
class BrokerSettings(LocalOptions):
    """The broker's options (every field of `LocalOptions`), with the files it uses."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    database: Path

    @classmethod
    def of(
        cls,
        options: LocalOptions,
        *,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        database: Path,
    ) -> BrokerSettings:
        """`options`, whole, with the CA's files and the database."""
        carried = {option.name: getattr(options, option.name) for option in fields(LocalOptions)}
        return cls(
            **carried, ca_file=ca_file, cert_file=cert_file, key_file=key_file, database=database
        )


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
        self.quiet = QuietLog(log)  # the broker's decisions, a few lines of each kind a second

    # Listening

    async def start(self) -> None:
        """Open the TLS and WebSocket listeners and start housekeeping."""
        context = server_context(self.settings)
        loop = asyncio.get_running_loop()
        # Both ports are taken before either serves, the way every kit listener takes one
        # (kit.ports: a port another program holds is refused on Windows too).
        host = self.settings.host
        tcp_sockets = listen_on(host, self.settings.port, holder=PORT_HOLDER, fix=PORT_FIX)
        try:
            ws_sockets = listen_on(host, self.settings.ws_port, holder=PORT_HOLDER, fix=PORT_FIX)
        except BaseException:
            for sock in tcp_sockets:
                sock.close()
            raise
        for sock in tcp_sockets:
            self._servers.append(
                await loop.create_server(
                    lambda: TlsLink(self),
                    sock=sock,
                    ssl=context,
                    ssl_handshake_timeout=self.settings.connect_timeout,
                )
            )
        for sock in ws_sockets:
            self._servers.append(
                await serve_websocket(
                    partial(serve_websocket_client, self),
                    sock=sock,
                    ssl=context,
                    ssl_handshake_timeout=self.settings.connect_timeout,
                    open_timeout=self.settings.connect_timeout,
                    subprotocols=["mqtt"],  # type: ignore[list-item]
                    compression=None,
                    max_size=MAX_PACKET,
                )
            )
        # The ports it listens on (settings may ask for 0: any free port).
        self.ports = {
            "default": tcp_sockets[0].getsockname()[1],
            "ws": ws_sockets[0].getsockname()[1],
        }
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
        self.quiet.flush(everything=True)
        self.recorder.close()
        self.store.close()

    def open_connection(self, link: Link, transport: Any, peer: Any) -> Connection:
        """A new connection whose TLS handshake is done; it waits for its CONNECT."""
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        address = peer[0] if isinstance(peer, tuple) else str(peer)
        connection = Connection(self, link, der, address)
        self.connections.add(connection)
        problem = self._certificate_problem(der)
        if problem:
            # AWS refuses a certificate that is not ACTIVE. Refused here, nothing the client
            # sends is read, parsed or logged: a removed certificate costs one short line.
            self.quiet.info(
                "refused connections", "refused a connection from %s: %s", address, problem
            )
            connection.close("")
        return connection

    def _certificate_problem(self, der: bytes | None) -> str:
        """Why a client's certificate may not connect at all, or "" if it is ACTIVE."""
        if der is None:
            return "no client certificate"  # TLS asks for one; a transport may not say
        principal = self.store.principal(certificate_id(der))
        if principal is None:
            return "its certificate is not registered (removed, or never issued here)"
        if principal.status != "ACTIVE":
            return f"its certificate is {principal.status}"
        return ""

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
        if session.principal.role == DEVICE:
            # Presence is best effort: when the recorder's queue is full it waits for the next.
            topic = f"{PRESENCE_PREFIX}{event}/{session.client_id}"
            self.recorder.offer(topic, json.dumps(body).encode(), time.time())

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
        self.quiet.flush()  # "... and K more" for the log lines held back in the last second
        handshaking = False  # connections that have not sent CONNECT yet
        for connection in list(self.connections):
            if connection.closed:
                continue
            if connection.session is None:
                if now - connection.opened > self.settings.connect_timeout:
                    connection.close("no CONNECT within the time allowed")
                else:
                    handshaking = True
            elif now - connection.last_heard > 1.5 * connection.keepalive:
                connection.close("keep-alive timeout", "MQTT_KEEP_ALIVE_TIMEOUT")
        closed = self._closed_since_collect
        if closed >= COLLECT_AFTER or (closed and not handshaking):
            # asyncio's TLS transports end in reference cycles, each holding a 256 KiB buffer;
            # left to the garbage collector's own pace, a flood of dead sockets doubles memory.
            # Collect once a flood has passed (or every hundred closes while it lasts).
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


async def serve(
    settings: BrokerSettings,
    on_listening: Callable[[dict[str, int]], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the broker until `stop` is set; `on_listening(ports)` once it listens."""
    broker = Broker(settings)
    try:
        await broker.start()
    except BaseException:  # a port in use: the recorder and the store it opened close too
        await broker.shutdown()
        raise
    if on_listening is not None:
        on_listening(dict(broker.ports))
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await broker.shutdown()
