"""The class's live feed: one observer connection for the whole class, handed out by owner.

The class server holds a single observer (kit.telemetry) on the class's broker, local or AWS.
Every event it decodes gets the next number and is kept, a few hundred per device, so a page
that lost its stream comes back with `Last-Event-ID` and misses nothing. Followers (one per open
page) say which device they watch, or every device (the instructor): kit.classroom.streams
checks who may follow what, before and while it asks; this module only delivers.

paho's network thread numbers and keeps events under a lock, then hands each one to the web
server's event loop, which alone touches the followers' queues.

What the feed keeps is bounded by the class: at most `keep` events per device, a rejected
payload only as far as a page shows it, and nothing of a device the cloud no longer has (told
by `forget`, or found by a look at the cloud's things every PRUNE_EVERY seconds). LED commands
go through the observer's LedCommands (kit.led_commands): the latest per device, devices in turn,
so one student's flood never delays another's command, and every LED off goes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from kit import telemetry
from kit.cloud import Cloud
from kit.cloud.store import STORED_BYTES, Message
from kit.errors import KitError, TelemetryError

log = logging.getLogger(__name__)

EVERY = "*"  # a follower of every device (the instructor's live view)
Watched = str | tuple[str, ...]  # a device, several (a student's), or EVERY
KEEP_PER_DEVICE = 600  # 10 minutes at 1 message/s; 100 at the sketch's one per 10 s
QUEUE_LIMIT = 1000  # a page this far behind is dropped; it reconnects and catches up
HISTORY_SECONDS = 3600
HISTORY_ROWS = 3600  # an hour at one message a second
READING_BYTES = STORED_BYTES  # a reading is tens of bytes: a bigger payload is no reading
SHOWN_BYTES = 200  # of a rejected payload, what a page shows (and all the feed keeps)
PRUNE_EVERY = 60.0  # seconds between two looks for devices the cloud no longer has


@dataclass(frozen=True)
class Numbered:
    """One event of the feed with its number (the stream's event id)."""

    id: int
    event: telemetry.Event

    @property
    def kind(self) -> str:
        return KINDS[type(self.event)]

    def as_json(self) -> dict[str, Any]:
        """What a page receives: plain JSON, the payload of a bad message as text."""
        return {"id": self.id, "kind": self.kind, **describe(self.event)}

    def frame(self) -> str:
        """The event as one Server-Sent Events frame."""
        data = json.dumps(self.as_json(), separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.kind}\ndata: {data}\n\n"


KINDS: dict[type, str] = {
    telemetry.Reading: "reading",
    telemetry.LedState: "led",
    telemetry.Rejected: "rejected",
    telemetry.Lifecycle: "presence",
}


def describe(event: telemetry.Event) -> dict[str, Any]:
    """An event's fields as JSON values (a rejected payload as text, at most 200 characters)."""
    fields: dict[str, Any] = {"thing": event.thing, "time": round(event.time, 3)}
    if isinstance(event, telemetry.Reading):
        fields.update(temperature=event.temperature, humidity=event.humidity)
        if event.sent is not None:
            fields.update(sent=event.sent)
    elif isinstance(event, telemetry.LedState):
        fields.update(value=event.value)
    elif isinstance(event, telemetry.Rejected):
        payload = event.payload[:SHOWN_BYTES].decode("utf-8", errors="replace")
        fields.update(topic=event.topic, payload=payload, reason=event.reason)
    else:
        fields.update(connected=event.connected)
    return fields


class Signal(enum.Enum):
    """What a follower hears besides events."""

    QUIET = "quiet"  # nothing new for a while (the stream sends a comment to stay open)
    RELOAD = "reload"  # a gap that cannot be filled: the page loads the story again
    ENDED = "ended"  # the feed stopped, or the page fell too far behind: it reconnects


@dataclass(eq=False)
class Follower:
    """One open page: the devices it follows (or EVERY) and its queue of events."""

    keys: tuple[str, ...]
    queue: asyncio.Queue[Numbered | Signal] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )


@dataclass(frozen=True)
class Snapshot:
    """A device's story so far, as a page loads it: what the cloud recorded before the feed
    began, what the feed kept since, and the number to follow from."""

    recorded: list[dict[str, Any]]
    kept: list[dict[str, Any]]
    last_id: int


class ClassFeed:
    """The observer of the class's broker and the followers of what it sees."""

    def __init__(
        self, cloud: Cloud, keep: int = KEEP_PER_DEVICE, prune_every: float = PRUNE_EVERY
    ) -> None:
        self.cloud = cloud
        self.keep, self.prune_every = keep, prune_every
        # Numbers go on from the time the feed began, in milliseconds, so they only grow
        # across restarts of the server (fewer than a thousand events a second), and an id
        # from before a restart is known as such: that page loads its story again.
        self.first_id = self.last_id = int(time.time() * 1000)
        self.started = 0.0
        self._kept: dict[str, deque[Numbered]] = {}
        self._dropped: dict[str, Numbered] = {}  # device -> the newest of its events let go
        self._lock = threading.Lock()
        self._followers: dict[str, set[Follower]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: telemetry.Telemetry | None = None
        self._stopping = threading.Event()
        self._pruner: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> ClassFeed:
        """Connect the observer (followers are served on `loop`)."""
        self._loop = loop
        watch = telemetry.Telemetry(self.cloud.observer(), keep=1, renew=self.cloud.observer)
        watch.listen(self._arrived)
        self._watch = watch.start()
        # Only now: what the broker recorded before this moment, the feed may not have seen
        # (the recorder, not the feed, tells of it); a message in the few milliseconds between
        # the subscription and now may be told by both.
        self.started = time.time()
        self._stopping.clear()
        self._pruner = threading.Thread(target=self._prune_now_and_then, daemon=True)
        self._pruner.start()
        return self

    def stop(self) -> None:
        """Disconnect the observer and end every stream."""
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        every = {follower for followers in self._followers.values() for follower in followers}
        for follower in every:  # one follower of several devices is under each of them
            _end(follower)

    @property
    def connected(self) -> bool:
        return self._watch is not None and self._watch.connected.is_set()

    def led(self, thing: str, value: int) -> None:
        """Ask `thing` to set its LED (the caller checked the person may): in place of a
        command of its still waiting, in turn with the other devices'."""
        self._running().led(thing, value)

    def leds_off(self, things: Iterable[str]) -> None:
        """Every LED of `things` off, before any other command waiting (a quiet room)."""
        watch = self._running()
        for thing in things:
            watch.led(thing, 0, first=True)

    def _running(self) -> telemetry.Telemetry:
        if self._watch is None:
            raise TelemetryError("The class's live feed is not running.")
        return self._watch

    # Devices that are gone

    def forget(self, thing: str) -> None:
        """Drop what the feed kept of `thing` (removed from the class and its cloud)."""
        with self._lock:
            self._kept.pop(thing, None)
            self._dropped.pop(thing, None)

    def prune(self) -> list[str]:
        """Forget the devices the cloud no longer has (removed by `kit unregister`, in the AWS
        console, or by the class); return them."""
        asked = time.time()
        known = set(self.cloud.things())
        with self._lock:
            # One that spoke since the question may have been registered meanwhile: kept.
            gone = [
                thing
                for thing, kept in self._kept.items()
                if thing not in known and (not kept or kept[-1].event.time < asked)
            ]
        for thing in gone:
            self.forget(thing)
        return gone

    def _prune_now_and_then(self) -> None:
        while not self._stopping.wait(self.prune_every):
            try:
                self.prune()
            except KitError as error:  # the cloud cannot answer now: ask again next time
                log.warning("The class feed could not list the cloud's devices: %s", error)
            except Exception:  # neither may a bug end the pruning for the rest of the class
                log.exception("The class feed could not look for removed devices")

    # Events arriving (paho's thread)

    def _arrived(self, event: telemetry.Event) -> None:
        if isinstance(event, telemetry.Rejected):
            # Kept only as far as a page shows it: a flood of 128 KB payloads costs 200 bytes.
            event = replace(event, payload=event.payload[:SHOWN_BYTES])
        with self._lock:
            self.last_id += 1
            numbered = Numbered(self.last_id, event)
            kept = self._kept.setdefault(event.thing, deque(maxlen=self.keep))
            if len(kept) == kept.maxlen:
                self._dropped[event.thing] = kept[0]
            kept.append(numbered)
        if self._loop is not None:
            # RuntimeError: the web server is shutting down, and nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._deliver, numbered)

    # Followers (the event loop's thread)

    def _deliver(self, numbered: Numbered) -> None:
        for key in (numbered.event.thing, EVERY):
            for follower in list(self._followers.get(key, ())):
                try:
                    follower.queue.put_nowait(numbered)
                except asyncio.QueueFull:
                    # Too slow: end its stream; the browser reconnects with the last id it
                    # saw and catches up from what is kept, so nothing is lost.
                    self._forget(follower)
                    _end(follower)

    def _forget(self, follower: Follower) -> None:
        for key in follower.keys:
            self._followers.get(key, set()).discard(follower)

    def kept_since(self, watched: Watched, after: int) -> list[Numbered] | None:
        """The kept events of `watched` (a device, several, or EVERY) numbered after `after`,
        oldest first; None when some of them were let go already (the page must load the
        history again)."""
        if after < self.first_id:
            return None  # numbered by an earlier run of the server: what came between is lost
        keys = _keys(watched)
        with self._lock:
            things = list(self._kept) if EVERY in keys else keys
            found: list[Numbered] = []
            for name in things:
                dropped = self._dropped.get(name)
                if dropped is not None and after < dropped.id:
                    return None
                found.extend(n for n in self._kept.get(name, ()) if n.id > after)
        return sorted(found, key=lambda n: n.id)

    def recent(self, thing: str, count: int) -> list[Numbered]:
        """The last `count` events the feed kept of `thing`."""
        with self._lock:
            return list(self._kept.get(thing, ()))[-count:]

    async def follow(
        self, watched: Watched, after: int, keepalive: float = 15.0
    ) -> AsyncIterator[Numbered | Signal]:
        """The events of `watched` (a device, several, or EVERY) after number `after`: first
        those kept, then live ones as they come, QUIET after `keepalive` seconds without any.
        Ends after RELOAD (the gap cannot be filled) or ENDED."""
        follower = Follower(_keys(watched))
        for key in follower.keys:
            self._followers.setdefault(key, set()).add(follower)
        try:
            caught_up = self.kept_since(watched, after)
            if caught_up is None:
                yield Signal.RELOAD
                return
            for numbered in caught_up:
                yield numbered
            last = caught_up[-1].id if caught_up else after
            while True:
                try:
                    item = await asyncio.wait_for(follower.queue.get(), keepalive)
                except TimeoutError:
                    yield Signal.QUIET
                    continue
                if isinstance(item, Signal):
                    yield item
                    return
                if item.id > last:  # kept and live overlap for a moment at the start
                    last = item.id
                    yield item
        finally:
            self._forget(follower)

    def snapshot(self, thing: str, since: float) -> Snapshot:
        """`thing` since `since` (at most the last hour): recorded before the feed kept it,
        then kept. A device's owner sees nothing from before it was theirs."""
        since = max(since, time.time() - HISTORY_SECONDS)
        with self._lock:
            kept = [n for n in self._kept.get(thing, ()) if n.event.time >= since]
            last_id = self.last_id
            # What the feed let go (or never saw, before it started) comes from the recorder.
            dropped = self._dropped.get(thing)
            until = dropped.event.time if dropped is not None else self.started
        messages = self.cloud.history(
            thing, since=since, until=until, latest=HISTORY_ROWS, max_bytes=READING_BYTES
        )
        recorded = [describe(event) for event in _decoded(messages)]
        return Snapshot(recorded, [n.as_json() for n in kept], last_id)


def _end(follower: Follower) -> None:
    """End a follower's stream: what it had not taken yet is dropped (it catches up on
    reconnecting), so there is always room for the signal."""
    while not follower.queue.empty():
        follower.queue.get_nowait()
    follower.queue.put_nowait(Signal.ENDED)


def _keys(watched: Watched) -> tuple[str, ...]:
    return (watched,) if isinstance(watched, str) else watched


def _decoded(messages: list[Message]) -> list[telemetry.Event]:
    """The recorded messages a page can show (readings and LED states, oldest first)."""
    decoded = (telemetry.decode(m.topic, m.payload, m.received) for m in messages)
    return [e for e in decoded if isinstance(e, (telemetry.Reading, telemetry.LedState))]
