"""The local MQTT broker: amqtt with TLS client certificates and the device policy enforced.

amqtt verifies client certificates only optionally and, for a forbidden topic, drops the
message or refuses the subscription; AWS IoT closes the connection. `PolicyBroker` requires a
certificate from the local CA, checks it against the registry on every CONNECT, and closes the
connection on a policy violation, so students meet AWS's behaviour here first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amqtt.broker import Action, Broker

from kit.certs import load_certificate
from kit.cloud.local_ca import OBSERVER_CN, certificate_id
from kit.cloud.policy import OBSERVER_ID_PREFIX, device_may, observer_may
from kit.cloud.store import Store

log = logging.getLogger("kit.broker")


@dataclass
class BrokerSettings:
    """Where the broker listens and which files it uses."""

    host: str
    port: int
    ws_port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    database: Path
    ports: dict[str, int] = field(default_factory=dict)  # filled in once listening


def _listener(settings: BrokerSettings, kind: str, port: int) -> dict[str, Any]:
    return {
        "type": kind,
        "bind": f"{settings.host}:{port}",
        "ssl": True,
        "certfile": str(settings.cert_file),
        "keyfile": str(settings.key_file),
        "cafile": str(settings.ca_file),
        "max_connections": 5000,
    }


class PolicyBroker(Broker):
    """amqtt's broker with mutual TLS, the registry and the device policy."""

    def __init__(self, settings: BrokerSettings) -> None:
        config = {
            "listeners": {
                "default": _listener(settings, "tcp", settings.port),
                "ws": _listener(settings, "ws", settings.ws_port),
            },
            "plugins": {},
            "timeout_disconnect_delay": 2,
        }
        super().__init__(config)
        self.settings = settings
        self.store = Store(settings.database)
        self._peers: dict[tuple[str, int], bytes] = {}
        self._roles: dict[str, str] = {}  # client id -> "device" | "observer"
        # Connected sessions a new CONNECT with the same client id will replace, once it has
        # passed authentication (AWS evicts the first connection; a refused one evicts nothing).
        self._replacing: dict[str, Any] = {}

    async def _delete_session(self, client_id: str) -> None:
        existing = self._sessions.get(client_id)
        if existing is not None and existing[0].transitions.is_connected():
            self._replacing[client_id] = existing
            return
        await super()._delete_session(client_id)

    @staticmethod
    def _create_ssl_context(listener: Any) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=listener.get("cafile"))
        context.load_cert_chain(listener["certfile"], listener["keyfile"])
        # A device must show a certificate from the local CA, as AWS IoT requires one of its own.
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def start(self) -> None:
        await super().start()
        for name, server in self._servers.items():
            sockets = getattr(server.instance, "sockets", None) or []
            if sockets:
                self.settings.ports[name] = sockets[0].getsockname()[1]

    async def _client_connected(self, listener_name: str, reader: Any, writer: Any) -> None:
        peer = writer.get_peer_info()
        der = _peer_certificate(writer)
        if peer is not None and der is not None:
            self._peers[tuple(peer)] = der
        try:
            await super()._client_connected(listener_name, reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as error:
            # A refused or vanished client: nothing to do but note it.
            log.info("connection from %s ended: %s", peer, error)
        finally:
            if peer is not None:
                self._peers.pop(tuple(peer), None)

    async def _authenticate(self, session: Any, _: Any) -> bool:
        der = self._peers.get((session.remote_address, session.remote_port))
        client_id = session.client_id or ""
        if der is None:
            log.info("refused %s: no client certificate", client_id)
            return False
        cert = load_certificate(der)
        if cert.common_name == OBSERVER_CN:
            allowed = client_id.startswith(OBSERVER_ID_PREFIX)
            role = "observer"
        else:
            thing = self.store.active_certificate(certificate_id(der))
            # iot:Connect is allowed only on client/<the certificate's common name>.
            allowed = thing is not None and thing == cert.common_name == client_id
            role = "device"
        replaced = self._replacing.pop(client_id, None)
        if allowed:
            self._roles[client_id] = role
            if replaced is not None:
                log.info("evicted the earlier connection of %s", client_id)
                await _close(replaced[1])
                await super()._delete_session(client_id)
        log.info(
            "%s %s (%s, certificate CN %s)",
            "accepted" if allowed else "refused",
            client_id,
            role,
            cert.common_name,
        )
        return allowed

    def _may(self, session: Any, action: str, topic: str) -> bool:
        client_id = session.client_id or ""
        if self._roles.get(client_id) == "observer":
            return observer_may(action, topic)  # type: ignore[arg-type]
        return device_may(client_id, action, topic)  # type: ignore[arg-type]

    async def _topic_filtering(self, session: Any, topic: str, action: Action) -> bool:
        return self._may(session, "publish" if action == Action.PUBLISH else "subscribe", topic)

    async def _handle_subscription(
        self, client_session: Any, handler: Any, subscribe_waiter: Any
    ) -> None:
        subscriptions = subscribe_waiter.result()
        for topic, _qos in subscriptions.topics:
            if not self._may(client_session, "subscribe", topic):
                log.info(
                    "closed %s: subscribe to %s is not allowed", client_session.client_id, topic
                )
                await _close(handler)
                return
        await super()._handle_subscription(client_session, handler, subscribe_waiter)

    async def _handle_message_delivery(
        self, client_session: Any, handler: Any, wait_deliver: Any
    ) -> bool:
        message = wait_deliver.result()
        if (
            message is not None
            and message.topic
            and not self._may(client_session, "publish", message.topic)
        ):
            log.info(
                "closed %s: publish to %s is not allowed", client_session.client_id, message.topic
            )
            await _close(handler)
            return False
        delivered = await super()._handle_message_delivery(client_session, handler, wait_deliver)
        if message is not None and message.topic:
            self.store.record(message.topic, bytes(message.data or b""))
        return delivered


async def _close(handler: Any) -> None:
    """Close a client's connection, as AWS IoT does on a policy violation (MQTT 3.1.1)."""
    writer = getattr(handler, "writer", None)
    if writer is not None:
        with contextlib.suppress(Exception):
            await writer.close()


def _peer_certificate(writer: Any) -> bytes | None:
    """The client certificate (DER) of a TLS connection, for TCP and WebSocket listeners."""
    transport = None
    inner = getattr(writer, "_writer", None)  # StreamWriterAdapter
    if inner is not None:
        transport = inner
    protocol = getattr(writer, "_protocol", None)  # WebSocketsWriter
    if protocol is not None:
        transport = getattr(protocol, "transport", None)
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None


async def serve(
    settings: BrokerSettings, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run the broker until `stop` is set."""
    broker = PolicyBroker(settings)
    await broker.start()
    if ready is not None:
        ready.set()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await broker.shutdown()
        broker.store.close()
