"""The live dashboard's routes: a device's story so far, its live stream, and its LED.

A page loads `/live/<thing>/story` (history, then what the feed kept, and the number to follow
from), then opens `/live/<thing>/events` as a Server-Sent Events stream; when the stream drops,
the browser reconnects by itself with `Last-Event-ID` and the feed sends what it missed. Every
route asks kit.classroom.ownership.may_see first: a student follows and commands only their
own devices, the instructor every device of the class (`/live/*/events`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import FastAPI, Form, Header, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from kit import telemetry
from kit.classroom.live import EVERY, ClassFeed, Numbered, Signal, Watched
from kit.classroom.ownership import may_see, presence_since, teaches
from kit.classroom.pages import Pages
from kit.classroom.store import Session
from kit.errors import KitError

KEEPALIVE = 15.0  # seconds between comments on a quiet stream, so proxies keep it open
RETRY_MS = 2000  # how soon a browser reconnects a dropped stream
RECENT = 60  # readings per device on the instructor's small charts
STREAMS_EACH = 8  # live pages one person may keep open (tabs, a projector, a phone)
STREAMS_TOTAL = 1500  # for the whole class: 300 students with a few pages each
Verdict = Literal["show", "skip", "gone"]  # an event for a stream: its own, too old, not theirs


def stream_budget() -> int:
    """How many streams the limit on open files leaves room for (some kept for the rest)."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to ask
        return STREAMS_TOTAL
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return STREAMS_TOTAL
    return max(50, min(STREAMS_TOTAL, soft - 300))


class Streams:
    """How many live streams each person has open, within a bound for each and for all: a
    stream holds a connection and a file descriptor for as long as the page stays open."""

    def __init__(self, each: int = STREAMS_EACH, total: int | None = None) -> None:
        self.each, self.total = each, total if total is not None else stream_budget()
        self._open: Counter[str] = Counter()  # touched on the event loop's thread only

    def open(self, person: str) -> bool:
        """Count one more stream for `person`, if both bounds allow it."""
        if self._open[person] >= self.each or self._open.total() >= self.total:
            return False
        self._open[person] += 1
        return True

    async def closing(self, person: str, frames: AsyncIterator[str]) -> AsyncIterator[str]:
        """`frames`, counting the stream as closed when they end or the page goes away."""
        try:
            async for frame in frames:
                yield frame
        finally:
            self._open[person] -= 1


class Live:
    """The class's live feed as the pages and the notebooks' API serve it: a device's story,
    its stream and its LED, for a person the caller has checked may see it."""

    def __init__(self, pages: Pages, feed: ClassFeed) -> None:
        self.store, self.cloud, self.feed = pages.store, pages.cloud, feed
        self.streams = Streams()

    def story(self, thing: str) -> dict[str, Any]:
        """History and what the feed kept of `thing`, with the number to follow from."""
        snapshot = self.feed.snapshot(thing, since=self.store.registered_at(thing) or time.time())
        presence = presence_since(self.store, self.cloud, thing)
        return {
            "thing": thing,
            "recorded": snapshot.recorded,
            "kept": snapshot.kept,
            "last_id": snapshot.last_id,
            "connected": presence.connected,
            "last_seen": presence.last_seen,
            "feed": self.feed.connected,
        }

    def stream(
        self,
        person: str,
        watched: Watched,
        after: int,
        *,
        everything: bool,
        still_allowed: Callable[[], bool],
    ) -> Response:
        """The Server-Sent Events stream of `watched` (a device, several, or EVERY: the
        class) after number `after`, for `person` (`everything`: the instructor), for as long
        as `still_allowed()` (their session or token is still live)."""
        if not self.streams.open(person):
            return PlainTextResponse(
                "Too many live pages are open: close some tabs and reload this one.", 429
            )

        def verdict(event: telemetry.Event) -> Verdict:
            # Asked again at every event: a device can change hands while a page is open, and
            # nothing from before it became its owner's reaches them.
            owner = self.store.owner(event.thing)
            if owner is None or not (everything or owner == person):
                return "gone"
            since = self.store.registered_at(event.thing)
            return "show" if since is not None and event.time >= since else "skip"

        frames = _frames(self.feed, watched, after, verdict, still_allowed)
        return StreamingResponse(
            self.streams.closing(person, frames),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    def led(self, thing: str, value: str) -> str:
        """Ask `thing` to set its LED to `value` percent: "" when sent, else why not."""
        brightness = number(value)
        if brightness is None:
            return "The LED brightness is a whole number from 0 to 100."
        try:
            self.feed.led(thing, telemetry.check_brightness(brightness))
        except KitError as error:
            return str(error)
        return ""


def add_routes(app: FastAPI, pages: Pages, live: Live) -> None:
    """The dashboard pages and their data, all behind the owner check."""
    store = pages.store

    def allowed(request: Request, thing: str) -> Session | None:
        session = pages.current(request)
        if session is None:
            return None
        if thing == EVERY:
            return session if teaches(session) else None
        return session if may_see(store, session, thing) else None

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
        if thing == EVERY or not may_see(store, session, thing):
            return not_yours()
        if switch == "0" or (switch == "100" and value == "0"):
            value = switch  # "off" wins over the slider; "on" with the slider at 0 is full on
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
            for thing in store.all_things():
                feed.led(thing, 0)
        except KitError as error:
            return PlainTextResponse(str(error), 503)
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/class/live", status_code=303)
        return PlainTextResponse("sent", 202)


async def _frames(
    feed: ClassFeed,
    watched: Watched,
    after: int,
    verdict: Callable[[telemetry.Event], Verdict],
    still_allowed: Callable[[], bool],
) -> AsyncIterator[str]:
    """Server-Sent Events frames: the events after `after` whose `verdict` is "show", a
    comment now and then while quiet, and a `reload` event when the page must load the story
    again. The stream ends when a device it follows is "gone" (no longer the person's: the
    reconnecting page meets the owner check), and once `still_allowed()` is not (asked at most
    once a second): a revoked token or an ended session stops what it had opened."""
    yield f"retry: {RETRY_MS}\n\n"
    asked = time.monotonic()
    async for item in feed.follow(watched, after, keepalive=KEEPALIVE):
        if time.monotonic() - asked >= 1.0:
            asked = time.monotonic()
            if not still_allowed():
                return
        if item is Signal.QUIET:
            yield ": quiet\n\n"
        elif item is Signal.RELOAD:
            yield "event: reload\ndata: {}\n\n"
        elif isinstance(item, Numbered):
            judged = verdict(item.event)
            if judged == "show":
                yield item.frame()
            elif judged == "gone" and watched != EVERY:
                return


def number(text: str) -> int | None:
    """A whole number as a form or header sends it (ASCII digits, at most 18), else None."""
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None
