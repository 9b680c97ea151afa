"""The two ways a client reaches the local broker, each adapted to the `Link` a Connection reads
and writes: MQTT over TLS (an asyncio protocol) and MQTT over WebSocket over TLS."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, cast

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from kit.cloud.broker import Broker
    from kit.cloud.mqtt_connection import Connection


class TlsLink(asyncio.Protocol):
    """MQTT over TLS: an asyncio protocol feeding one Connection."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.transport: Any = None
        self.connection: Connection | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.connection = self.broker.open_connection(self, transport, peer)

    def data_received(self, data: bytes) -> None:
        # None only while a refused connection closes (asyncio's TLS shutdown hands over what
        # the client already sent, before connection_made has returned): it is never read.
        if self.connection is not None:
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
        return cast(int, self.transport.get_write_buffer_size())


class WebSocketLink:
    """MQTT over WebSocket over TLS: binary messages in, a sender task out."""

    def __init__(self, websocket: ServerConnection) -> None:
        self.websocket = websocket
        self.reading = asyncio.Event()
        self.reading.set()
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._size = 0  # bytes written and not yet handed to the WebSocket
        self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                data = await self._outgoing.get()
                try:
                    await self.websocket.send(data)
                finally:
                    self._size -= len(data)
                    self._outgoing.task_done()

    def write(self, data: bytes) -> None:
        self._size += len(data)
        self._outgoing.put_nowait(data)

    def close(self) -> None:
        """Close once what was written has been sent (2 s at the most)."""

        async def close_after_sending() -> None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._outgoing.join(), 2)
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


async def serve_websocket_client(broker: Broker, websocket: ServerConnection) -> None:
    """Feed one WebSocket's binary messages to a Connection until either side closes."""
    link = WebSocketLink(websocket)
    connection = broker.open_connection(link, websocket.transport, websocket.remote_address)
    try:
        if connection.closed:  # refused at once (its certificate is not ACTIVE): read nothing
            return
        async for message in websocket:
            if isinstance(message, str):
                connection.close("a text frame (MQTT over WebSocket is binary)")
                break
            connection.received(message)
            await link.reading.wait()  # cleared while the recorder has no room
    except ConnectionClosed:
        pass
    finally:
        connection.lost()
        link.stop()
