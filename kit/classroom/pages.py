"""What every page of the class site needs: templates, the session behind a request, CSRF.

A session cookie holds only a random id (HttpOnly, SameSite=Lax, Secure over HTTPS), kept
hashed in the store; every form carries the session's CSRF token (the login form one of its
own, in a cookie). Routes live in kit.classroom.site and kit.classroom.dashboard.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from kit.classroom.guards import LED_BURST, LED_RATE, Rate, same
from kit.classroom.ownership import Registrar, remove_devices
from kit.classroom.store import ClassStore, Session
from kit.cloud import Cloud

HERE = Path(__file__).parent


@dataclass(frozen=True)
class SiteOptions:
    """How the site is reached: its address (for messages), whether over HTTPS, and the names
    a request may give in its Host header (none given: the address's own; this computer's
    loopback names always)."""

    address: str
    https: bool = True
    hosts: tuple[str, ...] = ()

    def host_names(self) -> tuple[str, ...]:
        """The names the site answers to (besides localhost, 127.0.0.1 and ::1)."""
        return self.hosts or (urlsplit(self.address).hostname or "localhost",)


class Pages:
    """The class's store and cloud, and how a request becomes a page or a refusal."""

    def __init__(self, store: ClassStore, cloud: Cloud, options: SiteOptions) -> None:
        self.store, self.cloud, self.options = store, cloud, options
        self.registrar = Registrar(store, cloud)
        # One person's LED commands, whichever way they come (the API, a page): the class
        # has one connection to the broker, shared by every student's commands.
        self.led_rate = Rate(LED_RATE, LED_BURST)
        # What else forgets a removed device (the live feed, once there is one).
        self.forgotten: list[Callable[[str], None]] = []
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.filters["seen"] = seen
        # The __Host- prefix makes the browser refuse the cookie from anything but this host
        # over HTTPS, so another site on the network cannot plant one.
        self.cookie = "__Host-kit_session" if options.https else "kit_session"
        self.login_cookie = "__Host-kit_login" if options.https else "kit_login"

    def remove_devices(self, things: list[str]) -> list[str]:
        """Remove these things from the cloud and the class, and from what still keeps them
        (the feed's memory of them); return them."""
        removed = remove_devices(self.store, self.cloud, things)
        for thing in removed:
            for forget in self.forgotten:
                forget(thing)
        return removed

    def page(
        self, request: Request, name: str, session: Session | None, **context: Any
    ) -> Response:
        """The template `name` with the session and the site's address (status from context)."""
        status = context.pop("status", 200)
        return self.templates.TemplateResponse(
            request,
            name,
            {"session": session, "address": self.options.address, **context},
            status_code=status,
        )

    def current(self, request: Request) -> Session | None:
        """The session the request's cookie names, if it is still open."""
        session_id = request.cookies.get(self.cookie, "")
        return self.store.session(session_id) if session_id else None

    def checked(self, request: Request, csrf: str) -> Session | None:
        """The session of a form post whose CSRF token is right, else None."""
        session = self.current(request)
        if session is None or not same(session.csrf, csrf):
            return None
        return session

    def instructor(self, request: Request) -> Session | None:
        """The request's session if it is the instructor's, else None."""
        session = self.current(request)
        return session if session is not None and session.account.role == "instructor" else None

    def for_instructor(
        self, request: Request, name: str, context: Callable[[], dict[str, Any]] = dict
    ) -> Response:
        """The instructor's page `name` (its context made only for them); anyone else is sent
        to log in, or refused."""
        session = self.instructor(request)
        if session is None:
            return self.to_login() if self.current(request) is None else self.not_theirs()
        return self.page(request, name, session, **context())

    @staticmethod
    def not_theirs() -> Response:
        return PlainTextResponse("This page is the instructor's.", 403)

    @staticmethod
    def to_login() -> Response:
        return RedirectResponse("/login", status_code=303)

    @staticmethod
    def refused() -> Response:
        return PlainTextResponse(
            "This form is out of date or not yours. Go back, reload the page and try again.", 403
        )


def seen(moment: float) -> str:
    """A time as the page shows it: HH:MM:SS today, else the date too."""
    shown = time.localtime(moment)
    today = time.localtime()
    same_day = shown[:3] == today[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", shown)
