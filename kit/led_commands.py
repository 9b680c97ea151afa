"""LED commands on one connection, fair between devices (for the class server, the whole
class's): while a device's command is unacknowledged only its latest next one is kept, the
devices take turns, and the connection stays under the broker's publishes a second, so one
student's flood never queues in front of another's command, nor in front of "every LED off".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# AWS IoT Core takes 100 publishes a second on a connection (the local broker drops the rest
# without a PUBACK): LED commands keep under it, with room for a clock that runs fast.
LED_RATE = 80.0
LED_WINDOW = 20  # unacknowledged commands at once: paho's window, which a lost one would hold
LED_ACK_WAIT = 3.0  # seconds a device's unacknowledged command holds its turn, then it is lost


class LedCommands:
    """The LED commands of one connection, fair between devices: while a device's command is
    unacknowledged only its latest next one is kept, the devices take turns, and at most
    `rate` commands go out a second. `publish(thing, value)` sends one and returns its message
    id; `acknowledged(mid)` is told of each PUBACK (on paho's thread)."""

    def __init__(
        self,
        publish: Callable[[str, int], int],
        rate: float = LED_RATE,
        window: int = LED_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish, self.rate, self.window, self._clock = publish, rate, window, clock
        self._waiting: dict[str, int] = {}  # device -> latest value; the order is the turns
        self._first: dict[str, int] = {}  # the same, for commands that go before any other
        self._in_flight: dict[str, float] = {}  # device -> when its command went out
        self._ids: dict[int, str] = {}  # message id -> device
        self._early: set[int] = set()  # PUBACKs that came before publish() returned
        self._tokens = float(window)
        self._refilled = clock()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.sent = 0
        self.lost = 0  # commands never acknowledged within LED_ACK_WAIT

    def ask(self, thing: str, value: int, first: bool = False) -> None:
        """Queue `value` for `thing`, in place of any it had waiting; `first`: before every
        command that is not `first` (every LED off), and never replaced by one."""
        with self._changed:
            if first:
                self._first[thing] = value
            else:
                self._waiting[thing] = value  # a device already waiting keeps its turn
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, daemon=True, name="kit-leds")
                self._thread.start()
            self._changed.notify()

    def acknowledged(self, mid: int) -> None:
        """The broker acknowledged message `mid` (paho's thread: never blocks on publish)."""
        with self._changed:
            thing = self._ids.pop(mid, None)
            if thing is None:
                if len(self._early) > 1000:  # ids of no command of ours: never claimed
                    self._early.clear()
                self._early.add(mid)
                return
            self._in_flight.pop(thing, None)
            self._changed.notify()

    def waiting(self) -> dict[str, int]:
        """The commands not sent yet, device -> value, in turn order (the first ones apart)."""
        with self._changed:
            return dict(self._waiting)

    def close(self) -> None:
        """Stop sending (what still waits is dropped with the connection)."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._changed:
                chosen = self._next()
                while chosen is None:
                    if self._closed:
                        return
                    self._changed.wait(self._pause())
                    chosen = self._next()
                thing, value = chosen
            # Outside the lock: paho calls `acknowledged` holding a lock publish() also takes.
            try:
                mid = self._publish(thing, value)
            except Exception:  # paho refused it (a closing client): the device's turn is free
                log.exception("An LED command to %s could not be sent", thing)
                with self._changed:
                    self._in_flight.pop(thing, None)
                continue
            with self._changed:
                self.sent += 1
                if mid in self._early:
                    self._early.discard(mid)
                    self._in_flight.pop(thing, None)
                else:
                    self._ids[mid] = thing

    def _next(self) -> tuple[str, int] | None:
        """The next device whose turn it is and its value, if the rate and window allow one
        now (it is then in flight); None otherwise. Called holding the lock."""
        if self._closed:
            return None
        now = self._clock()
        for thing, sent in list(self._in_flight.items()):
            if now - sent > LED_ACK_WAIT:  # dropped without a PUBACK: free its turn
                del self._in_flight[thing]
                self._ids = {m: t for m, t in self._ids.items() if t != thing}
                self.lost += 1
        self._tokens = min(self.window, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens < 1 or len(self._in_flight) >= self.window:
            return None
        for queue in (self._first, self._waiting):
            for thing in queue:
                if thing not in self._in_flight:
                    self._tokens -= 1
                    self._in_flight[thing] = now
                    return thing, queue.pop(thing)
        return None

    def _pause(self) -> float | None:
        """How long nothing can go out unless told (None: until a command or a PUBACK)."""
        if not self._waiting and not self._first:
            return None
        pauses = [LED_ACK_WAIT - (self._clock() - sent) for sent in self._in_flight.values()]
        if self._tokens < 1:
            pauses.append((1 - self._tokens) / self.rate)
        return max(0.001, min(pauses)) if pauses else None
