"""Network ports: the broker's defaults, and reading a port a person typed.

A port is ASCII digits only: Python's int() also reads Arabic-Indic digits, spaces, '+' and '_',
so "host:١٢٣" would silently become port 123.
"""

from __future__ import annotations

MQTT_TLS_PORT = 8883  # MQTT over TLS: AWS IoT Core, and the local cloud by default
WEBSOCKET_TLS_PORT = 8884  # the local cloud's MQTT over WebSocket/TLS (AWS uses 443)
_ASCII_DIGITS = frozenset("0123456789")


def read_port(text: str, lowest: int = 1) -> int | None:
    """The port `text` names (ASCII digits, `lowest` to 65535), or None if it names none."""
    if not text or len(text) > 5 or not set(text) <= _ASCII_DIGITS:
        return None
    port = int(text)
    return port if lowest <= port <= 65535 else None
