"""What every request to the class site passes through: the connection's own limits (a time
for its headers, a share per address), the class's own host names, a size limit, hardened
headers; and the rate at which one person may command LEDs."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import threading
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import h11
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

MAX_BODY = 256 * 1024  # a CSR is a few hundred bytes; a paste with a serial log a few KB
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
HEADERS = {
    # Scripts, styles and connections only from the site itself; never inside a frame.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


HEADER_TIMEOUT = 10.0  # seconds for a request to arrive whole, from its connection or first byte
CONNECTIONS_EACH = 100  # open connections per address: a laptop's tabs, live pages, notebooks
# This computer itself: the instructor's notebook, and a reverse proxy in front of the site
# (which has its own limits, and through which every student arrives from here).
UNCAPPED = frozenset({"127.0.0.1", "::1"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
LED_RATE = 5.0  # LED commands a second per person, sustained (the page sends at most 4)
LED_BURST = 10.0  # and at once


def guard(app: FastAPI, hosts: Iterable[str] = ()) -> None:
    """Add the body limit, the hardened headers and (if `hosts` names any) the host check."""
    app.add_middleware(BodyLimit)
    if hosts:
        app.add_middleware(OwnHosts, hosts=hosts)

    @app.middleware("http")
    async def hardened(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(HEADERS)
        return response


def same(expected: str, given: str) -> bool:
    """A token comparison in constant time (as bytes: any text a request carries is allowed)."""
    return secrets.compare_digest(expected.encode(), given.encode())


class BodyLimit:
    """Refuse request bodies over `limit` bytes (413), counted as they arrive."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_much = PlainTextResponse("That is too much to send at once.", 413)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_much(scope, receive, send)
            return
        seen = 0
        over = False

        async def counted() -> dict[str, Any]:
            nonlocal seen, over
            message: dict[str, Any] = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                over = True
                raise TooLarge
            return message

        async def unless_over(message: dict[str, Any]) -> None:
            # A body sent without a length (chunked) is only found too large while the app
            # reads it, and FastAPI answers a failed form read with 400: say 413 instead.
            if not over:
                await send(message)

        with contextlib.suppress(TooLarge):
            await self.app(scope, counted, unless_over)
        if over:
            await too_much(scope, receive, send)


class TooLarge(Exception):
    """A request body grew over the limit while it arrived."""


class OwnHosts:
    """Refuse (400) a request whose Host header is not one of the class's own names, nor the
    address the request reached (a laptop without mDNS types the IP address, and a notebook
    pins the certificate, not a name), before anything can build a link from it (Starlette's
    slash redirect does)."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        # Names as the class was given them (an IPv6 address bare), then as a header has them.
        named = (plain_address(name) if _is_address(name) else host_name(name) for name in hosts)
        self.hosts = frozenset(name for name in (*named, *LOOPBACK_NAMES) if name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            given = host_name(dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1"))
            reached = (scope.get("server") or ("",))[0] or ""
            if given not in self.hosts and (
                not given or plain_address(given) != plain_address(reached)
            ):
                refused = PlainTextResponse(
                    "This is not an address of the class site: type the one on your card.", 400
                )
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_name(header: str) -> str:
    """The name in a Host header (or a bare name), lower case, without port or brackets; ""
    if it is not one."""
    try:
        return (urlsplit("//" + header.strip()).hostname or "").rstrip(".")
    except ValueError:  # an unclosed bracket, a port that is no number
        return ""


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def plain_address(host: str) -> str:
    """An IP address as one writes it (an IPv4-mapped IPv6 as IPv4); anything else as is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return str(getattr(address, "ipv4_mapped", None) or address)


class Rate:
    """A token bucket per person: `rate` a second sustained, `burst` at once."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # person -> (tokens, when)
        self._lock = threading.Lock()  # sync routes run on many threads

    def take(self, person: str) -> float:
        """0 if `person` may go ahead now (one token taken), else the seconds to wait."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(person, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens < 1:
                self._buckets[person] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[person] = (tokens - 1, now)
            if len(self._buckets) > 10_000:  # people who stopped long ago: full buckets
                self._buckets = {p: b for p, b in self._buckets.items() if b[1] > now - 60}
            return 0.0


def network(host: str) -> str | None:
    """The IPv6 /64 of `host` (one laptop may hold all of it); None for anything else."""
    try:
        address = ipaddress.ip_address(plain_address(host))
    except ValueError:
        return None
    if address.version != 6 or address.is_loopback:
        return None
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def address_key(host: str) -> str:
    """The address a client is counted under: an IPv6 as its /64, an IPv4-mapped IPv6 as
    IPv4."""
    return network(host) or plain_address(host)


_open: weakref.WeakKeyDictionary[ServerState, Counter[str]] = weakref.WeakKeyDictionary()


class GuardedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with what it lacks for a room: a request must arrive whole
    within HEADER_TIMEOUT of its connection or its first byte (uvicorn times only the wait
    between requests, so half a request held a connection and its ~256 KB of TLS buffers for
    ever), and each address holds at most CONNECTIONS_EACH connections.

    It relies on uvicorn's H11Protocol calling connection_made, data_received and
    connection_lost as asyncio does, and keeping its h11 connection in `self.conn`
    (tests/test_classroom_fairness.py fails if an upgrade changes that).
    """

    _counted = ""
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = address_key(self.client[0]) if self.client else ""
        counts = _open.setdefault(self.server_state, Counter())
        if address not in UNCAPPED and counts[address] >= CONNECTIONS_EACH:
            # Read nothing: the address holds its share already. Dropped, not closed: TLS's
            # polite close waits up to 30 s for a peer that may never answer.
            transport.abort()
            return
        counts[address] += 1
        self._counted = address or "?"
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            if self._deadline is None:  # the first byte of a request: its time starts
                self._arm()
        else:  # the request is all here: the app answers in its own time (live pages)
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted:
            counts = _open.get(self.server_state)
            if counts is not None:
                counts[self._counted] -= 1
                if counts[self._counted] <= 0:
                    del counts[self._counted]
            self._counted = ""
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(HEADER_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            # Dropped, not closed: TLS's polite close would wait up to 30 s more for a
            # client that stopped answering, holding its buffers all that time.
            self.transport.abort()
