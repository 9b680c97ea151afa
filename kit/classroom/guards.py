"""What every request to the class site passes through: a size limit and hardened headers."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

MAX_BODY = 256 * 1024  # a CSR is a few hundred bytes; a paste with a serial log a few KB
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
HEADERS = {
    # Scripts, styles and connections only from the site itself; never inside a frame.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def guard(app: FastAPI) -> None:
    """Add the body limit and the hardened headers to `app`."""
    app.add_middleware(BodyLimit)

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
