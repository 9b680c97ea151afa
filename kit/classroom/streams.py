"""The class's live feed as HTTP streams: Server-Sent Events for the dashboard's pages and the
notebooks' API alike (kit.classroom.dashboard, kit.classroom.api).

`Live` serves a device's story, its stream and its LED to a person the caller has checked may
see it; every event is judged again as it goes out (a device can change hands while a page is
open, and nothing from before it became its owner's reaches them), and a stream ends once the
session or token that opened it is no longer live. `Streams` bounds how many are open.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from kit import telemetry
from kit.classroom.live import EVERY, ClassFeed, Numbered, Signal, Watched
from kit.classroom.ownership import presence_since
from kit.classroom.pages import Pages
from kit.errors import KitError

KEEPALIVE = 15.0  # seconds between comments on a quiet stream, so proxies keep it open
RETRY_MS = 2000  # how soon a browser reconnects a dropped stream
STREAMS_EACH = 8  # live pages one person may keep open (tabs, a projector, a phone)
STREAMS_TOTAL = 1500  # for the whole class: 300 students with a few pages each
Verdict = Literal["show", "skip", "gone"]  # an event for a stream: its own, too old, not theirs


def stream_budget() -> int:
    """How many streams the limit on open files leaves room for (some kept for the rest)."""
    # if/else, not an early return: mypy then checks each system's branch as that system's.
    if sys.platform == "win32":
        soft = None  # no `resource` module: see live_page_budget
    else:
        import resource

        limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        soft = None if limit == resource.RLIM_INFINITY else limit
    return live_page_budget(sys.platform, soft)


def live_page_budget(platform: str, open_files: int | None) -> int:
    """How many streams fit on `platform` under a limit of `open_files` (None: no limit)."""
    if platform == "win32":
        # Windows counts no sockets against a limit per process (the C runtime's 512 are
        # files), and uvicorn serves there on the Proactor loop (IOCP), which has no ceiling
        # like select()'s 512 sockets: the class's own bound is the only one.
        return STREAMS_TOTAL
    if open_files is None:
        return STREAMS_TOTAL
    return max(50, min(STREAMS_TOTAL, open_files - 300))


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
        pages.forgotten.append(feed.forget)  # a removed device's kept events go at once

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
