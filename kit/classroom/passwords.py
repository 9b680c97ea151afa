"""Passwords: generated for handouts, hashed with argon2, checked with a bound and a backoff.

argon2 needs 64 MiB per hash by design, so at most a few hashes run at once: thirty students
logging in together wait their turn instead of exhausting the server's memory. Failed logins
slow down per account and client address (never a lock-out: one student cannot keep another
out by typing wrong passwords for them from another laptop).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kit.classroom.store import ClassStore

# Letters and digits that cannot be mistaken for each other on a printed card (no 0/O, 1/l/I).
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
HASHING_AT_ONCE = 4  # 4 x 64 MiB
HASH_WAIT = 10.0  # seconds a login waits for a slot before the site says it is busy
FREE_FAILURES = 3  # then 1 s, 2 s, 4 s ... up to MAX_WAIT between tries
MAX_WAIT = 30.0

_hasher = PasswordHasher()
_slots = threading.BoundedSemaphore(HASHING_AT_ONCE)


def generate() -> str:
    """A new password for a handout: three groups of four, about 59 bits."""
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(4)) for _ in range(3))


def hash_password(password: str) -> str:
    """The argon2 hash to store."""
    with _slots:
        return _hasher.hash(password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to check against when the account does not exist, so that answer takes as long.
_DUMMY = _hasher.hash(generate())


ANY_NAME = "*"  # the failures of one client whatever the username (a flood of made-up names)
CLIENT_FREE_FAILURES = 20  # a room behind one address fails now and then; right ones never count
FORGET_AFTER = 300.0  # seconds without a failure, then a count starts over
_counting = threading.Lock()  # the wait is decided and the try counted as one step


class Busy(Exception):
    """Every hashing slot stayed taken: the site answers "try again" instead of queueing."""


@dataclass(frozen=True)
class Login:
    """The answer to a login: right or not, or how many seconds to wait before trying."""

    right: bool
    wait: float = 0.0


def wait_before_next_try(store: ClassStore, username: str, client: str) -> float:
    """Seconds this client must wait before trying this account again (0: go ahead).

    Two counts: this account from this client (3 free tries), and this client whatever the
    name (20 free), so made-up names cannot flood the hashing either, and a known name answers
    exactly as an unknown one.
    """
    now = store.now()
    return max(
        _wait(*store.failures(username, client), FREE_FAILURES, now),
        _wait(*store.failures(ANY_NAME, client), CLIENT_FREE_FAILURES, now),
    )


def _wait(count: int, last: float, free: int, now: float) -> float:
    if count < free or now - last > FORGET_AFTER:
        return 0.0
    return max(0.0, last + min(MAX_WAIT, 2.0 ** min(count - free, 16)) - now)


def check_login(store: ClassStore, username: str, password: str, client: str) -> Login:
    """Check a password, unless this client must wait first (Busy if no hashing slot frees
    up in time).

    A try counts against its account before the hash is checked, in the same step that
    decides whether to wait, so many guesses at one account sent at once cannot all slip
    through the backoff; a right password then clears that count. Against the client as a
    whole only wrong answers count, once known: a room behind one address logging in at the
    same moment must not be told to wait by its own tries in flight.
    """
    with _counting:
        wait = wait_before_next_try(store, username, client)
        if wait > 0:
            return Login(False, wait)
        store.failed(username, client, FORGET_AFTER)
    stored = store.password_hash(username)
    if not _slots.acquire(timeout=HASH_WAIT):
        raise Busy
    try:
        right = _verify(stored or _DUMMY, password) and stored is not None
    finally:
        _slots.release()
    if right:
        store.succeeded(username, client)
    else:
        store.failed(ANY_NAME, client, FORGET_AFTER)
    return Login(right)
