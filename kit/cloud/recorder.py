"""The recorder: writes the messages the broker accepted into the cloud database, off its loop.

The broker hands each message to `offer` (never blocks); when the bounded queue is full the
broker stops reading from that publisher and waits in `put` on a worker thread, so a burst slows
the publishers down instead of dropping messages (back-pressure). One thread writes in batches,
one transaction each, and removes messages older than the retention period in between.
`close` writes everything still queued: after a graceful stop, every message the broker
acknowledged is in the database.

The queue holds only what the store keeps of a payload (kit.cloud.store.shortened), so a
flood of 128 KB payloads costs the broker 2 KB each while they wait. A device at its storage
quota is named in the broker's log (once an hour, never once per message).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kit.cloud.store import DEVICE_QUOTA, Row, Store, shortened

log = logging.getLogger("kit.broker")

QUEUE_SIZE = 10_000
BATCH = 500
CLEAN_EVERY = 3600.0  # seconds between retention passes
_STOP = object()


class Recorder:
    """A writer thread behind a bounded queue of (topic, payload, received)."""

    def __init__(
        self,
        database: Path,
        keep_days: float = 30,
        size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.time,
        clean_every: float = CLEAN_EVERY,
    ) -> None:
        self.database, self.keep_days, self.clock = database, keep_days, clock
        self.clean_every = clean_every
        self._queue: queue.Queue[Row | object] = queue.Queue(maxsize=size)
        self._thread = threading.Thread(target=self._run, daemon=True, name="kit-recorder")
        self._cleaned = -float("inf")
        self.written = 0
        self._thread.start()

    def offer(self, topic: str, payload: bytes, received: float) -> bool:
        """Queue a message if there is room; False means: call `put` off the event loop."""
        try:
            self._queue.put_nowait(shortened(topic, payload, received))
        except queue.Full:
            return False
        return True

    def put(self, topic: str, payload: bytes, received: float) -> None:
        """Queue a message, waiting for room (run in a worker thread, never on the loop)."""
        self._queue.put(shortened(topic, payload, received))

    def flush(self) -> None:
        """Wait until everything queued so far is written."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        store = Store(self.database)
        try:
            self._clean(store)
            while True:
                try:
                    first = self._queue.get(timeout=60)
                except queue.Empty:
                    self._clean(store)
                    continue
                batch = [first]
                while len(batch) < BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                rows = [item for item in batch if isinstance(item, tuple)]
                try:
                    if rows:
                        recorded = store.record_many(rows)
                        self.written += len(rows)
                        for thing in recorded.full:
                            log.warning(full_notice(thing))
                except Exception:  # the broker must outlive a full disk; say what was lost
                    log.exception("the recorder could not write %d messages", len(rows))
                self._clean(store)
                for _ in batch:
                    self._queue.task_done()
                if len(rows) < len(batch):
                    return
        finally:
            store.close()

    def _clean(self, store: Store) -> None:
        """Remove messages past the retention period, at most once per `clean_every` seconds."""
        now = self.clock()
        if now - self._cleaned < self.clean_every:
            return
        self._cleaned = now
        removed = store.forget_before(now - self.keep_days * 86400)
        if removed:
            log.info("removed %d recorded messages older than %g days", removed, self.keep_days)


def full_notice(thing: str) -> str:
    """What the instructor reads when a device reaches its storage quota."""
    return (
        f"{thing} reached its storage quota of {DEVICE_QUOTA // 2**20} MB: its oldest recorded "
        "messages are forgotten to make room for new ones (live pages still see them all). A "
        "board that sends this much is flooding: look at it on the class page, or remove it "
        f"(course.unregister('{thing}') in a notebook here, or `kit unregister {thing}`). Said "
        "again in an hour if it goes on."
    )
