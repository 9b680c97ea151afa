"""What the local broker keeps for one client id between connections: its subscriptions and the
QoS 1 messages not yet acknowledged, within AWS's in-flight limit and bounds of the kit's own."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kit.cloud import mqtt_codec as mqtt
from kit.cloud.store import Principal

if TYPE_CHECKING:
    from kit.cloud.mqtt_connection import Connection

MAX_INFLIGHT = 100  # unacknowledged QoS 1 messages out to one client (AWS: 100)
MAX_QUEUED = 1000  # QoS 1 messages kept for one session beyond that (oldest dropped first)
MAX_QUEUED_BYTES = 8 * 1024 * 1024  # and at most this much payload (oldest dropped first)


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
        self._send_queued()

    def resume(self) -> None:
        """A persistent session reconnected: send again what was not acknowledged, then the rest."""
        assert self.connection is not None
        for packet_id, (topic, payload) in self.inflight.items():
            self.connection.write(mqtt.publish(topic, payload, 1, packet_id, dup=True))
        self._send_queued()

    def _send_queued(self) -> None:
        while self.queued and len(self.inflight) < MAX_INFLIGHT and self.connection:
            topic, payload = self.queued.popleft()
            self.queued_bytes -= len(payload)
            self._send(topic, payload)

    def _send(self, topic: str, payload: bytes) -> None:
        assert self.connection is not None
        packet_id = self._next_id
        while packet_id == 0 or packet_id in self.inflight:
            packet_id = packet_id % 65535 + 1
        self._next_id = packet_id
        self.inflight[packet_id] = (topic, payload)
        self.connection.write(mqtt.publish(topic, payload, 1, packet_id))
