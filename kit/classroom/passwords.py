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


def _matches(stored: str, password: str) -> bool:
    with _slots:
        try:
            return _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


# A hash to check against when the account does not exist, so that answer takes as long.
_DUMMY = _hasher.hash(generate())


def wait_before_next_try(store: ClassStore, username: str, client: str, now: float) -> float:
    """Seconds this client must wait before trying this account again (0: go ahead)."""
    count, last = store.failures(username, client)
    if count < FREE_FAILURES:
        return 0.0
    wait = min(MAX_WAIT, 2.0 ** (count - FREE_FAILURES))
    return max(0.0, last + wait - now)


def check_login(store: ClassStore, username: str, password: str, client: str) -> bool:
    """Whether the password is right; records the failure or the success for the backoff."""
    stored = store.password_hash(username)
    ok = _matches(stored or _DUMMY, password) and stored is not None
    if ok:
        store.succeeded(username, client)
    elif stored is not None:  # no rows for names nobody has: they could fill the store
        store.failed(username, client)
    return ok
