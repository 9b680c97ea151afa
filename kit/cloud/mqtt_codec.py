"""MQTT 3.1.1 packets as the local broker reads and writes them (the subset AWS IoT Core speaks).

Reading is incremental: `PacketReader.feed` takes bytes as they arrive and returns whole packets.
It checks a packet's declared size against the limit as soon as the fixed header is in, so an
oversized publish is refused before its payload is buffered. Anything malformed raises
`MqttProtocolError`; the broker closes the connection, as AWS does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import cast

from kit.errors import MqttProtocolError

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

# CONNACK return codes (MQTT 3.1.1, 3.2.2.3)
ACCEPTED, BAD_PROTOCOL, IDENTIFIER_REJECTED, NOT_AUTHORIZED = 0, 1, 2, 5


@dataclass(frozen=True)
class Will:
    """The message a client asks the broker to publish if it vanishes."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True)
class Connect:
    """A CONNECT packet."""

    protocol: str
    level: int
    client_id: str
    clean_session: bool
    keepalive: int
    will: Will | None


@dataclass(frozen=True)
class Publish:
    """A PUBLISH packet."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int = 0


@dataclass(frozen=True)
class Subscribe:
    """A SUBSCRIBE (or, with qos all 0, UNSUBSCRIBE) packet: its id and topic filters."""

    packet_id: int
    filters: tuple[tuple[str, int], ...]


class PacketReader:
    """Splits a byte stream into (type, flags, body) packets, refusing oversized ones early."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Add received bytes; return the packets now complete, in order."""
        self._buffer += data
        packets = []
        while True:
            header = self._header()
            if header is None:
                break
            size, start = header
            if len(self._buffer) < start + size:
                break
            first = self._buffer[0]
            packets.append((first >> 4, first & 0x0F, bytes(self._buffer[start : start + size])))
            del self._buffer[: start + size]
        return packets

    def _header(self) -> tuple[int, int] | None:
        """(remaining length, where the body starts), or None until the header is complete."""
        size, multiplier = 0, 1
        for index in range(1, 5):
            if index >= len(self._buffer):
                return None
            byte = self._buffer[index]
            size += (byte & 0x7F) * multiplier
            if size > self.max_size:
                raise MqttProtocolError(f"packet of at least {size} bytes is over the limit")
            if not byte & 0x80:
                return size, index + 1
            multiplier *= 128
        raise MqttProtocolError("malformed remaining length")


class _Body:
    """A cursor over a packet body."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def u8(self) -> int:
        self._need(1)
        self.at += 1
        return self.data[self.at - 1]

    def u16(self) -> int:
        self._need(2)
        self.at += 2
        return cast(int, struct.unpack_from("!H", self.data, self.at - 2)[0])

    def binary(self) -> bytes:
        size = self.u16()
        self._need(size)
        self.at += size
        return self.data[self.at - size : self.at]

    def text(self) -> str:
        raw = self.binary()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MqttProtocolError("a string is not UTF-8") from None
        if "\x00" in value:
            raise MqttProtocolError("a string holds U+0000")  # MQTT-1.5.3-2
        return value

    def rest(self) -> bytes:
        return self.data[self.at :]

    def done(self) -> bool:
        return self.at >= len(self.data)

    def _need(self, count: int) -> None:
        if self.at + count > len(self.data):
            raise MqttProtocolError("packet ends early")


def parse_connect(body: bytes) -> Connect:
    """Read a CONNECT body."""
    cursor = _Body(body)
    protocol, level, flags = cursor.text(), cursor.u8(), cursor.u8()
    keepalive = cursor.u16()
    if flags & 0x01:
        raise MqttProtocolError("reserved CONNECT flag set")  # MQTT-3.1.2-3
    client_id = cursor.text()
    will = None
    if flags & 0x04:
        topic = cursor.text()
        will = Will(topic, cursor.binary(), (flags >> 3) & 0x03, bool(flags & 0x20))
        if will.qos == 3:
            raise MqttProtocolError("will QoS 3 does not exist")  # MQTT-3.1.2-14
    elif flags & 0x38:
        raise MqttProtocolError("will flags without a will")  # MQTT-3.1.2-11
    if flags & 0x80:
        cursor.text()  # user name: identity comes from the certificate, as on AWS
    if flags & 0x40:
        cursor.binary()
    return Connect(protocol, level, client_id, bool(flags & 0x02), keepalive, will)


def parse_publish(flags: int, body: bytes) -> Publish:
    """Read a PUBLISH body (flags are the fixed header's low four bits)."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MqttProtocolError("QoS 3 does not exist")  # MQTT-3.3.1-4
    cursor = _Body(body)
    topic = cursor.text()
    packet_id = cursor.u16() if qos else 0
    if qos and not packet_id:
        raise MqttProtocolError("packet id 0")  # MQTT-2.3.1-1
    return Publish(topic, cursor.rest(), qos, bool(flags & 0x01), packet_id)


def parse_subscribe(body: bytes, with_qos: bool) -> Subscribe:
    """Read a SUBSCRIBE body, or an UNSUBSCRIBE body with `with_qos` False."""
    cursor = _Body(body)
    packet_id = cursor.u16()
    filters = []
    while not cursor.done():
        topic_filter = cursor.text()
        qos = cursor.u8() if with_qos else 0
        if qos > 2:
            raise MqttProtocolError("SUBSCRIBE with a QoS above 2")  # MQTT-3.8.3-4
        filters.append((topic_filter, qos))
    if not filters:
        raise MqttProtocolError("SUBSCRIBE without a topic filter")  # MQTT-3.8.3-3
    return Subscribe(packet_id, tuple(filters))


def packet_id(body: bytes) -> int:
    """The packet id of a PUBACK (or any packet that is only an id)."""
    return _Body(body).u16()


# Writing


def _remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        byte, size = size % 128, size // 128
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def connack(session_present: bool, code: int) -> bytes:
    return bytes([CONNACK << 4, 2, int(session_present), code])


def publish(
    topic: str,
    payload: bytes,
    qos: int,
    packet_id: int = 0,
    *,
    dup: bool = False,
) -> bytes:
    """A PUBLISH packet (never retained: the broker keeps no retained messages)."""
    body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return _packet((PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1), body)


def puback(packet_id: int) -> bytes:
    return bytes([PUBACK << 4, 2]) + struct.pack("!H", packet_id)


def suback(packet_id: int, codes: list[int]) -> bytes:
    return _packet(SUBACK << 4, struct.pack("!H", packet_id) + bytes(codes))


def unsuback(packet_id: int) -> bytes:
    return bytes([UNSUBACK << 4, 2]) + struct.pack("!H", packet_id)


PINGRESP_PACKET = bytes([PINGRESP << 4, 0])


# Topic names and filters


def topic_matches(topic: str, topic_filter: str) -> bool:
    """Whether a topic name matches a filter with + and # (MQTT 4.7)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False  # MQTT-4.7.2-1
    names, filters = topic.split("/"), topic_filter.split("/")
    for index, level in enumerate(filters):
        if level == "#":
            return True
        if index >= len(names) or level not in ("+", names[index]):
            return False
    return len(names) == len(filters)


def valid_filter(topic_filter: str) -> bool:
    """Whether a topic filter is well formed: '#' only last and alone, '+' alone in its level."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True
