"""Passwords: generated for handouts, hashed with argon2, checked fairly with a backoff.

argon2 needs 64 MiB and a core for a tenth of a second per hash by design, so hashes run on a
few threads of their own (never the site's web workers): thirty students logging in together
wait their turn, and beyond a room's worth waiting the site says "busy" at once. Whoever has
no wrong password lately, and the address with the fewest hashes waiting, goes first: a flood
of wrong passwords queues behind a student's right one.

Failed logins slow down per account and client address, per IPv6 /64, and for the whole site
once it has seen many (never a lock-out: one student cannot keep another out by typing wrong
passwords for them from another laptop).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import secrets
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.concurrency import run_in_threadpool

from kit.classroom.guards import network, plain_address
from kit.classroom.store import ClassStore

# Letters and digits that cannot be mistaken for each other on a printed card (no 0/O, 1/l/I).
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
HASHING_AT_ONCE = 4  # 4 x 64 MiB
HASHES_WAITING = 28  # a room logging in at the same moment waits ~3 s; more: "busy" at once
# An address that failed lately holds at most this many places, and all such addresses half
# of them: a flood of wrong passwords always leaves room for a student's first try.
SUSPECT_EACH = 2
NICE = 10  # hashing threads yield the processor to the pages (Linux: threads have their own)
FREE_FAILURES = 3  # then 1 s, 2 s, 4 s ... up to MAX_WAIT between tries
MAX_WAIT = 30.0
ANY_NAME = "*"  # the failures of one client whatever the username (a flood of made-up names)
CLIENT_FREE_FAILURES = 20  # a room behind one address fails now and then; right ones never count
NETWORK_FREE_FAILURES = 60  # an IPv6 /64: one laptop has a whole one, a room may share it
SITE_FAILURES = 60  # wrong passwords the site takes at once from clients that failed already,
SITE_REFILL = 1.0  # then this many a second: a flood from many addresses still ends in a wait
FORGET_AFTER = 300.0  # seconds without a failure, then a count starts over

_hasher = PasswordHasher()
_counting = threading.Lock()  # the wait is decided and the try counted as one step


class Busy(Exception):
    """A room's worth of hashes is waiting already: the site answers "try again" at once."""


@dataclass(frozen=True)
class Login:
    """The answer to a login: right or not, or how many seconds to wait before trying; when
    right, the credential version checked (the session or token is issued against it)."""

    right: bool
    wait: float = 0.0
    credentials: int | None = None


def generate() -> str:
    """A new password for a handout: three groups of four, about 59 bits."""
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(4)) for _ in range(3))


def hash_password(password: str) -> str:
    """The argon2 hash to store (on the caller's thread: the instructor's commands)."""
    return _hasher.hash(password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to check against when the account does not exist, so that answer takes as long.
_DUMMY = _hasher.hash(generate())


class Hashing:
    """argon2 on `workers` threads of its own, at most `waiting` more queued (Busy beyond);
    the queue served by (has failed lately, hashes its address has queued, arrival), and the
    addresses that failed lately holding only a share of it."""

    def __init__(self, workers: int = HASHING_AT_ONCE, waiting: int = HASHES_WAITING) -> None:
        self.workers, self.limit = workers, workers + waiting
        self._queue: queue.PriorityQueue[tuple[int, int, int, Callable[[], None]]] = (
            queue.PriorityQueue()
        )
        self._lock = threading.Lock()
        self._admitted = 0
        self._suspect = 0  # places held by addresses that failed lately
        self._per_client: dict[str, int] = {}
        self._arrivals = itertools.count()
        self._threads: list[threading.Thread] = []

    def admit(self, client: str, failed_lately: bool) -> int:
        """A place in the queue for `client` (Busy at once if it is full, or holds all an
        address that failed lately may): how many of its hashes were waiting already. `start`
        or `done` must follow."""
        with self._lock:
            waiting = self._per_client.get(client, 0)
            if self._admitted >= self.limit or (
                failed_lately and (waiting >= SUSPECT_EACH or self._suspect >= self.limit // 2)
            ):
                raise Busy
            self._admitted += 1
            self._suspect += failed_lately
            self._per_client[client] = waiting + 1
            while len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, name="argon2", daemon=True)
                thread.start()
                self._threads.append(thread)
        return waiting

    def start(
        self, client: str, waiting: int, failed_lately: bool, job: Callable[[], Login]
    ) -> Future[Login]:
        """Run `job` in `client`'s admitted place; its answer arrives in the future."""
        future: Future[Login] = Future()

        def run() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(job())
                    except BaseException as error:  # handed to whoever waits for the answer
                        future.set_exception(error)
            finally:
                self.done(client, failed_lately)

        self._queue.put((int(failed_lately), waiting, next(self._arrivals), run))
        return future

    def done(self, client: str, failed_lately: bool) -> None:
        """Give back `client`'s place (its hash ran, or never started)."""
        with self._lock:
            self._admitted -= 1
            self._suspect -= failed_lately
            left = self._per_client[client] - 1
            if left:
                self._per_client[client] = left
            else:
                del self._per_client[client]

    def _work(self) -> None:
        if sys.platform == "linux":
            # argon2's own threads inherit this: a page waits for no hash to yield the CPU.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        while True:
            self._queue.get()[-1]()


_hashing = Hashing()


class Budget:
    """The site's wrong passwords: SITE_FAILURES at once, refilled SITE_REFILL a second."""

    def __init__(self, now: float) -> None:
        self.left, self.at = float(SITE_FAILURES), now

    def _refill(self, now: float) -> None:
        self.left = min(float(SITE_FAILURES), self.left + (now - self.at) * SITE_REFILL)
        self.at = now

    def take(self, now: float) -> float:
        """Take one for a try to be checked: 0, or the seconds until there is one."""
        self._refill(now)
        if self.left < 1:
            return (1 - self.left) / SITE_REFILL
        self.left -= 1
        return 0.0

    def spend(self, now: float) -> None:
        """Count a wrong password that took nothing (a client's first), never far below 0."""
        self._refill(now)
        self.left = max(-float(SITE_FAILURES), self.left - 1)

    def give_back(self) -> None:
        """A try that was right: its share was not a failure."""
        self.left = min(float(SITE_FAILURES), self.left + 1)


_budgets: weakref.WeakKeyDictionary[ClassStore, Budget] = weakref.WeakKeyDictionary()


def client_key(client: str) -> str:
    """The address a client's tries are counted under (an IPv4-mapped IPv6 as IPv4)."""
    return plain_address(client)


def wait_before_next_try(store: ClassStore, username: str, client: str) -> float:
    """Seconds this client must wait before trying this account again (0: go ahead).

    Counts: this account from this client (3 free tries), this client whatever the name (20
    free), and its IPv6 /64 (60 free), so made-up names cannot flood the hashing either, and a
    known name answers exactly as an unknown one.
    """
    now, client = store.now(), client_key(client)
    waits = [
        _wait(*store.failures(username, client), FREE_FAILURES, now),
        _wait(*store.failures(ANY_NAME, client), CLIENT_FREE_FAILURES, now),
    ]
    net = network(client)
    if net is not None:
        waits.append(_wait(*store.failures(ANY_NAME, net), NETWORK_FREE_FAILURES, now))
    return max(waits)


def _wait(count: int, last: float, free: int, now: float) -> float:
    if count < free or now - last > FORGET_AFTER:
        return 0.0
    return max(0.0, last + min(MAX_WAIT, 2.0 ** min(count - free, 16)) - now)


def _failed_lately(store: ClassStore, client: str) -> bool:
    count, last = store.failures(ANY_NAME, client)
    return count > 0 and store.now() - last <= FORGET_AFTER


def check(store: ClassStore, username: str, password: str, client: str) -> Future[Login]:
    """Start checking a password, unless this client must wait first; the answer arrives in
    the future (Busy at once if a room's worth of hashes is waiting already).

    A try counts against its account before the hash is checked, in the same step that
    decides whether to wait, so many guesses at one account sent at once cannot all slip
    through the backoff; a right password then clears that count. Against the client as a
    whole only wrong answers count, once known: a room behind one address logging in at the
    same moment must not be told to wait by its own tries in flight. A client that failed
    lately also takes a share of the site's budget, given back if it was right.
    """
    client = client_key(client)
    net = network(client)
    with _counting:
        now = store.now()
        wait = wait_before_next_try(store, username, client)
        failed_lately = _failed_lately(store, client)
        budget = _budgets.setdefault(store, Budget(now))
        if wait == 0 and failed_lately:
            wait = budget.take(now)
        if wait > 0:
            done: Future[Login] = Future()
            done.set_result(Login(False, wait))
            return done
        found = store.credentials(username)

        def job() -> Login:
            stored, version = found if found is not None else (_DUMMY, None)
            right = _verify(stored, password) and version is not None
            if right:
                store.succeeded(username, client)
                if failed_lately:
                    with _counting:
                        budget.give_back()
                return Login(True, credentials=version)
            store.failed(ANY_NAME, client, FORGET_AFTER)
            if net is not None:
                store.failed(ANY_NAME, net, FORGET_AFTER)
            if not failed_lately:
                with _counting:
                    budget.spend(store.now())
            return Login(False)

        place = net or client  # in the queue, an IPv6 laptop is its whole /64
        try:
            waiting = _hashing.admit(place, failed_lately)
        except Busy:
            if failed_lately:
                budget.give_back()
            raise
        try:
            store.failed(username, client, FORGET_AFTER)
        except BaseException:
            _hashing.done(place, failed_lately)
            raise
        return _hashing.start(place, waiting, failed_lately, job)


def check_login(store: ClassStore, username: str, password: str, client: str) -> Login:
    """Check a password, unless this client must wait first (Busy if the queue is full)."""
    return check(store, username, password, client).result()


async def log_in(store: ClassStore, username: str, password: str, client: str) -> Login:
    """check_login for a web route: no web worker waits for argon2 (only the store's few
    milliseconds run on one)."""
    started = await run_in_threadpool(check, store, username, password, client)
    return await asyncio.wrap_future(started)
