"""Passwords: generated for handouts, hashed with argon2, checked with a bound and a backoff.

argon2 needs 64 MiB per hash by design, so at most a few hashes run at once: thirty students
logging in together wait their turn instead of exhausting the server's memory. Failed logins
slow down per account and client address (never a lock-out: one student cannot keep another
out by typing wrong passwords for them from another laptop).
"""

from __future__ import annotations

import secrets
import threading

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
CLIENT_FREE_FAILURES = 20  # generous: a room of students may share an address
CLIENT_FORGETS_AFTER = 300.0  # seconds without a failure, then the client's count starts over


class Busy(Exception):
    """Every hashing slot stayed taken: the site answers "try again" instead of queueing."""


def wait_before_next_try(store: ClassStore, username: str, client: str, now: float) -> float:
    """Seconds this client must wait before trying this account again (0: go ahead).

    Two counts: this account from this client (3 free tries), and this client whatever the
    name (20 free), so made-up names cannot flood the hashing either, and a known name answers
    exactly as an unknown one.
    """
    return max(
        _wait(*store.failures(username, client), FREE_FAILURES, now),
        _wait(*_client_failures(store, client, now), CLIENT_FREE_FAILURES, now),
    )


def _wait(count: int, last: float, free: int, now: float) -> float:
    if count < free:
        return 0.0
    return max(0.0, last + min(MAX_WAIT, 2.0 ** (count - free)) - now)


def _client_failures(store: ClassStore, client: str, now: float) -> tuple[int, float]:
    count, last = store.failures(ANY_NAME, client)
    return (0, 0.0) if now - last > CLIENT_FORGETS_AFTER else (count, last)


def check_login(store: ClassStore, username: str, password: str, client: str) -> bool:
    """Whether the password is right (Busy if no hashing slot frees up in time).

    The attempt counts as a failure before the hash is checked, so many tries at once cannot
    all slip through the backoff; a right password then clears this account's count.
    """
    store.failed(username, client)
    store.failed(ANY_NAME, client)
    stored = store.password_hash(username)
    if not _slots.acquire(timeout=HASH_WAIT):
        raise Busy
    try:
        ok = _verify(stored or _DUMMY, password) and stored is not None
    finally:
        _slots.release()
    if ok:
        store.succeeded(username, client)
    return ok
