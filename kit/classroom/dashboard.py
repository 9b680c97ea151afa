"""The live dashboard's routes: a device's story so far, its live stream, and its LED.

A page loads `/live/<thing>/story` (history, then what the feed kept, and the number to follow
from), then opens `/live/<thing>/events` as a Server-Sent Events stream; when the stream drops,
the browser reconnects by itself with `Last-Event-ID` and the feed sends what it missed. Every
route asks kit.classroom.ownership.may_see first: a student follows and commands only their
own devices, the instructor every device of the class (`/live/*/events`).
"""

from __future__ import annotations

import math
from typing import Annotated
from urllib.parse import quote

from fastapi import FastAPI, Form, Header, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from kit.classroom.live import EVERY
from kit.classroom.ownership import may_see, presence_since, teaches
from kit.classroom.pages import Pages
from kit.classroom.store import Session
from kit.classroom.streams import Live, number
from kit.errors import KitError

RECENT = 60  # readings per device on the instructor's small charts


def add_routes(app: FastAPI, pages: Pages, live: Live) -> None:
    """The dashboard pages and their data, all behind the owner check."""
    store = pages.store

    def allowed(request: Request, thing: str) -> Session | None:
        session = pages.current(request)
        if session is None:
            return None
        if thing == EVERY:
            return session if teaches(session) else None
        return session if may_see(store, session.account, thing) else None

    def not_yours() -> Response:
        return PlainTextResponse("There is no such device of yours.", 404)

    @app.get("/dashboard", response_class=HTMLResponse)
    def student_dashboard(request: Request, thing: str = "") -> Response:
        session = pages.current(request)
        if session is None:
            return pages.to_login()
        mine = store.things_of(session.account.username)
        chosen = thing if thing in mine else (mine[0] if mine else "")
        return pages.page(request, "dashboard.html", session, things=mine, thing=chosen)

    @app.get("/live/{thing}/story")
    def story(request: Request, thing: str) -> Response:
        """History and what the feed kept of `thing`, with the number to follow from."""
        if thing == EVERY or allowed(request, thing) is None:
            return not_yours()
        return JSONResponse(live.story(thing))

    @app.get("/live/{thing}/events")
    async def events(
        request: Request,
        thing: str,
        after: int = 0,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """The live stream of `thing` (the instructor: `*`, every device) after `after`, or
        after the Last-Event-ID a reconnecting browser sends."""
        session = allowed(request, thing)
        if session is None:
            return not_yours()
        if last_event_id is not None:
            after = number(last_event_id) or 0  # an unreadable id: from before this feed
        session_id = request.cookies.get(pages.cookie, "")

        def still_allowed() -> bool:
            return store.session(session_id) is not None

        return live.stream(
            session.account.username,
            thing,
            after,
            everything=teaches(session),
            still_allowed=still_allowed,
        )

    @app.post("/live/{thing}/led")
    def led(
        request: Request,
        thing: str,
        csrf: Annotated[str, Form()] = "",
        value: Annotated[str, Form()] = "",
        switch: Annotated[str, Form()] = "",
    ) -> Response:
        """Ask `thing` to set its LED to `value` percent (its owner or the instructor). The
        page's script sends only `value`; the form without JavaScript sends the on/off radio
        buttons (`switch`) too, and gets the dashboard back."""
        session = pages.checked(request, csrf)
        if session is None:
            return pages.refused()
        if thing == EVERY or not may_see(store, session.account, thing):
            return not_yours()
        if switch == "0" or (switch == "100" and value == "0"):
            value = switch  # "off" wins over the slider; "on" with the slider at 0 is full on
        wait = pages.led_rate.take(session.account.username)  # the API's limit, on pages too
        if wait > 0:
            return PlainTextResponse(
                f"Too many LED commands: send the next one in {wait:.1f} s.",
                429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        problem = live.led(thing, value)
        if problem:
            return PlainTextResponse(problem, 400)
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"/dashboard?thing={quote(thing)}", status_code=303)
        return PlainTextResponse("sent", 202)


def add_instructor_routes(app: FastAPI, pages: Pages, live: Live) -> None:
    """The instructor's live view of every device, and every LED off at once."""
    store, feed = pages.store, live.feed

    @app.get("/class/live", response_class=HTMLResponse)
    def live_view(request: Request) -> Response:
        return pages.for_instructor(request, "class_live.html")

    @app.get("/class/live/story")
    def class_story(request: Request) -> Response:
        """Every device of the class: its owner, presence and latest readings."""
        if pages.instructor(request) is None:
            return pages.not_theirs()
        last_id = feed.last_id  # first: what arrives meanwhile comes twice, never not at all
        names = {account.username: account.name for account in store.accounts()}
        devices = []
        for thing, owner in sorted(store.all_things().items()):
            presence = presence_since(store, pages.cloud, thing)
            devices.append(
                {
                    "thing": thing,
                    "owner": names.get(owner, owner),
                    "connected": presence.connected,
                    "last_seen": presence.last_seen,
                    "kept": [n.as_json() for n in feed.recent(thing, RECENT)],
                }
            )
        return JSONResponse({"devices": devices, "last_id": last_id, "feed": feed.connected})

    @app.post("/class/leds-off")
    def leds_off(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        """Every LED of the class off (a quiet room, or the end of the exercise)."""
        session = pages.checked(request, csrf)
        if session is None or not teaches(session):
            return pages.refused()
        try:
            feed.leds_off(store.all_things())  # ahead of any student's waiting commands
        except KitError as error:
            return PlainTextResponse(str(error), 503)
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/class/live", status_code=303)
        return PlainTextResponse("sent", 202)
