"""A raw MQTT 3.1.1 client over TLS, for the cases paho will not express (wildcards in a topic
name, QoS 2, oversized headers, retained wills, a second CONNECT).

Packets are built here byte by byte from the MQTT 3.1.1 specification, independently of the
kit's own codec, so a test asks a peer the broker's author did not write.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from pathlib import Path


def _length(size: int) -> bytes:
    out = bytearray()
    while True:
        byte, size = size % 128, size // 128
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out)


def _text(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def connect(
    client_id: str,
    keepalive: int = 60,
    clean: bool = True,
    will: tuple[str, bytes, int, bool] | None = None,
) -> bytes:
    """CONNECT; will = (topic, payload, qos, retain)."""
    flags = 0x02 if clean else 0
    payload = _text(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _text(topic) + _text(message)
    body = _text("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
    return bytes([0x10]) + _length(len(body)) + body


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 1, retain=False) -> bytes:
    body = _text(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([0x30 | (qos << 1) | int(retain)]) + _length(len(body)) + body


def subscribe(packet_id: int, *filters: tuple[str, int]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_text(f) + bytes([q]) for f, q in filters)
    return bytes([0x82]) + _length(len(body)) + body


def burst(topic: str, count: int) -> bytes:
    """`count` QoS 1 publishes in one write, packet ids 1..count, payloads {"n": i}."""
    return b"".join(publish(topic, b'{"n": %d}' % i, qos=1, packet_id=i + 1) for i in range(count))


DISCONNECT = bytes([0xE0, 0])
CONNACK, PUBLISH, PUBACK, SUBACK = 2, 3, 4, 9


class RawClient:
    """One TLS connection that sends bytes and reads packets (type, flags, body)."""

    def __init__(self, host: str, port: int, ca: Path, cert: Path | None, key: Path | None) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        if cert is not None:
            context.load_cert_chain(str(cert), str(key))
        plain = socket.create_connection((host, port), timeout=5)
        self.sock = context.wrap_socket(plain, server_hostname=host)
        self._buffer = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def packet(self, timeout: float = 3) -> tuple[int, int, bytes] | None:
        """The next packet, or None if the broker closed the connection (or nothing came)."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            except (ssl.SSLError, OSError):
                data = b""
            if not data:
                self.closed = True
            self._buffer += data

    def packets_until_closed(self, timeout: float = 3) -> list[tuple[int, int, bytes]]:
        """Every packet up to the broker closing the connection; stops at the timeout."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            packet = self.packet(deadline - time.monotonic())
            if packet is None:
                break
            seen.append(packet)
        return seen

    def count(self, most: int, timeout: float) -> int:
        """How many packets arrive (up to `most`), each within `timeout` of the one before."""
        seen = 0
        while seen < most and self.packet(timeout) is not None:
            seen += 1
        return seen

    def connack(self, timeout: float = 3) -> int | None:
        """The CONNACK return code, or None if the broker closed without one."""
        packet = self.packet(timeout)
        return packet[2][1] if packet is not None and packet[0] == CONNACK else None

    def _parse(self) -> tuple[int, int, bytes] | None:
        size, multiplier, index = 0, 1, 1
        while True:
            if index >= len(self._buffer):
                return None
            byte = self._buffer[index]
            size += (byte & 0x7F) * multiplier
            index += 1
            if not byte & 0x80:
                break
            multiplier *= 128
        if len(self._buffer) < index + size:
            return None
        first, body = self._buffer[0], self._buffer[index : index + size]
        self._buffer = self._buffer[index + size :]
        return first >> 4, first & 0x0F, body

    def close(self) -> None:
        self.sock.close()
