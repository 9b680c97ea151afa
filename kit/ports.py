"""Network ports: the broker's defaults, reading a port a person typed, taking one to listen on.

A port is ASCII digits only: Python's int() also reads Arabic-Indic digits, spaces, '+' and '_',
so "host:١٢٣" would silently become port 123.

Every socket the kit listens on (the broker's two listeners, their probe, the class site) is made
by `listen_on`, so one rule decides, on every system, that a port another program holds is
refused with a message naming it instead of being shared.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
from dataclasses import dataclass

from kit.errors import PortInUseError

MQTT_TLS_PORT = 8883  # MQTT over TLS: AWS IoT Core, and the local cloud by default
WEBSOCKET_TLS_PORT = 8884  # the local cloud's MQTT over WebSocket/TLS (AWS uses 443)
_ASCII_DIGITS = frozenset("0123456789")

# Winsock's SO_EXCLUSIVEADDRUSE is ((int)(~SO_REUSEADDR)) = ~4 (0xFFFFFFFB); Python's socket
# module has it on Windows only, and the Windows rule below is tested on Linux too.
SO_EXCLUSIVEADDRUSE: int = getattr(socket, "SO_EXCLUSIVEADDRUSE", ~4)
SocketOption = tuple[int, int, int]  # (level, option, value), as setsockopt takes them

if sys.platform == "win32":
    # A port another program holds exclusively, or one Windows keeps for itself (Hyper-V and
    # WSL reserve ranges), is refused with WSAEACCES (Python may report it as EACCES): taken,
    # not a permission an administrator would have.
    _TAKEN = {errno.EADDRINUSE, errno.WSAEADDRINUSE, errno.EACCES, errno.WSAEACCES}
    _NOT_ALLOWED: set[int] = set()
else:
    _TAKEN = {errno.EADDRINUSE}
    # POSIX refuses ports below 1024 to people who are not administrators (Linux, older macOS).
    _NOT_ALLOWED = {errno.EACCES}


def read_port(text: str, lowest: int = 1) -> int | None:
    """The port `text` names (ASCII digits, `lowest` to 65535), or None if it names none."""
    if not text or len(text) > 5 or not set(text) <= _ASCII_DIGITS:
        return None
    port = int(text)
    return port if lowest <= port <= 65535 else None


@dataclass(frozen=True)
class ListenRule:
    """How the kit takes a port to listen on, on one system."""

    options: tuple[SocketOption, ...]  # set before bind
    ask_who_answers: bool  # also refuse a port on which a connection is accepted


def listening_rule(platform: str = sys.platform) -> ListenRule:
    """How a listening socket is made on `platform` (a sys.platform value)."""
    if platform == "win32":
        # On Windows SO_REUSEADDR lets a second program bind a port that is already listening
        # (a second broker starts silently and the two share the connections); the exclusive
        # option makes that bind fail. Windows needs no SO_REUSEADDR to restart past
        # TIME_WAIT, and a refused connection to this computer takes it a second or more (it
        # retries), so nobody is asked.
        return ListenRule(((socket.SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1),), ask_who_answers=False)
    # Elsewhere SO_REUSEADDR only lets a restart bind while the last run's connections wait in
    # TIME_WAIT. Linux then refuses a port another program listens on; macOS (BSD) still lets
    # 127.0.0.1:P bind beside a listener on 0.0.0.0:P (and the reverse), so whoever accepts a
    # connection there is asked (a refusal from this computer comes at once).
    return ListenRule(((socket.SOL_SOCKET, socket.SO_REUSEADDR, 1),), ask_who_answers=True)


def listen_on(host: str, port: int, *, holder: str, fix: str) -> list[socket.socket]:
    """Listening sockets for `port` on every address `host` names ("": every address; port 0:
    a free one), or PortInUseError saying who may hold it (`holder`) and what to do (`fix`)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    # "localhost" may name 127.0.0.1 and ::1: one socket each, as asyncio's create_server does.
    addresses = list(dict.fromkeys((info[0], info[4]) for info in infos))
    taken: list[socket.socket] = []
    lacking: OSError | None = None
    try:
        for family, address in addresses:
            if port == 0 and taken:  # the same free port on every address
                address = (address[0], taken[0].getsockname()[1], *address[2:])
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as error:  # a family this computer lacks (IPv6 turned off)
                lacking = error  # skipped, as asyncio's create_server skips it
                continue
            taken.append(_take(sock, address, host, holder, fix))
    except BaseException:
        for sock in taken:
            sock.close()
        raise
    if not taken and lacking is not None:
        raise lacking
    return taken


def check_free(host: str, port: int, *, holder: str, fix: str) -> None:
    """PortInUseError (as `listen_on` says it) if `port` on `host` cannot be taken now."""
    for sock in listen_on(host, port, holder=holder, fix=fix):
        sock.close()


def _take(
    sock: socket.socket, address: tuple[object, ...], host: str, holder: str, fix: str
) -> socket.socket:
    """`sock` bound to `address` and listening, or PortInUseError (it is closed then)."""
    port = int(str(address[1]))
    family = sock.family
    try:
        rule = listening_rule()
        for level, option, value in rule.options:
            sock.setsockopt(level, option, value)
        if family == socket.AF_INET6:
            # One family per socket, as asyncio does: "::" must not also take 0.0.0.0's port.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(address)
            if port and rule.ask_who_answers and _answers(family, address):
                raise OSError(errno.EADDRINUSE, "a program answers on this port")
            sock.listen()  # now: two binds of one port can both succeed until one listens
        except OSError as error:
            raise _refusal(error, host, port, holder, fix) from None
    except BaseException:
        sock.close()
        raise
    return sock


def _answers(family: socket.AddressFamily, address: tuple[object, ...]) -> bool:
    """Whether something accepts a connection on `address` (the loopback for a wildcard)."""
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}
    target = (wildcard.get(str(address[0]), address[0]), *address[1:])
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        with contextlib.suppress(OSError):
            probe.connect(target)
            return True
    return False


def _refusal(error: OSError, host: str, port: int, holder: str, fix: str) -> Exception:
    """The kit's message for a port it may not take, or `error` itself if it means another thing."""
    where = f"Port {port} on {host or 'every address'}"
    if error.errno in _TAKEN:
        return PortInUseError(f"{where} is already in use ({holder}). {fix}")
    if error.errno in _NOT_ALLOWED:
        return PortInUseError(
            f"{where} is kept for administrators on this computer (ports below 1024 are, on "
            f"Linux). {fix}"
        )
    return error
