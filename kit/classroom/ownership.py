"""Whose device is whose, and removing devices from the class and its cloud together.

The class store says who owns each thing; the cloud holds the thing and its certificate. A
device leaves both, and one the cloud no longer has (removed with `kit unregister`, or by the
instructor in the AWS console) still leaves the class instead of blocking its owner's place.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kit import certs
from kit.classroom.store import Account, ClassStore, Session
from kit.cloud import Cloud, Presence, Registration
from kit.errors import KitError, ThingTakenError
from kit.printable import printable

MAX_DEVICES = 5  # per student: enough for a spare board, too few to squat the room's names
# The names `kit class provision --virtual` gives the class's virtual boards, in any case: no
# one may register one, or a student could take a classmate's board name before it is made.
BOARD_PREFIX = "class-"


def teaches(session: Session) -> bool:
    """Whether this person is the class's instructor."""
    return session.account.role == "instructor"


def may_see(store: ClassStore, account: Account, thing: str) -> bool:
    """Whether this person may see and command `thing`: their own, or any in the class for
    the instructor (never a thing the class does not hold). Every page and API route with a
    device in it asks this first."""
    owner = store.owner(thing)
    return owner is not None and (owner == account.username or account.role == "instructor")


def presence_since(store: ClassStore, cloud: Cloud, thing: str) -> Presence:
    """The device's presence as its owner in this class may see it: nothing from before it
    became theirs (a board passed on keeps its name, and the cloud remembers it)."""
    found = cloud.presence(thing)
    since = store.registered_at(thing)
    if since is None:
        return Presence(thing, None, None, None)
    changed_ok = found.changed is not None and found.changed >= since
    last_ok = found.last_message is not None and found.last_message >= since
    return Presence(
        thing,
        found.connected if changed_ok else None,
        found.changed if changed_ok else None,
        found.last_message if last_ok else None,
    )


def device_row(store: ClassStore, cloud: Cloud, thing: str) -> dict[str, Any]:
    """A device's line on My devices and the class page: connected now, last seen."""
    try:
        presence = presence_since(store, cloud, thing)
    except KitError:
        return {"thing": thing, "connected": None, "last_seen": None}
    return {"thing": thing, "connected": presence.connected, "last_seen": presence.last_seen}


def class_rows(store: ClassStore, cloud: Cloud) -> list[dict[str, Any]]:
    """A row per student: when their CSR arrived, their devices and the state of each."""
    received = store.csr_received_at()
    owners: dict[str, list[str]] = {}
    for thing, owner in sorted(store.all_things().items()):
        owners.setdefault(owner, []).append(thing)
    return [
        {
            "account": account,
            "csr": received.get(account.username),
            "devices": [
                device_row(store, cloud, thing) for thing in owners.get(account.username, [])
            ],
        }
        for account in store.accounts()
        if account.role == "student"
    ]


def remove_device(store: ClassStore, cloud: Cloud, thing: str, known: set[str]) -> None:
    """Remove `thing` from the cloud (if `known` there still) and from the class."""
    if thing in known:
        cloud.unregister(thing)
    store.release(thing)


def remove_devices(store: ClassStore, cloud: Cloud, things: list[str]) -> list[str]:
    """Remove these things of the class from the cloud and the class; return them."""
    known = set(cloud.things())  # one listing for all of them (on AWS, a paged API call)
    for thing in things:
        remove_device(store, cloud, thing, known)
    return things


class Claims:
    """One registration at a time per device name and per student, not one for the whole
    class: on AWS a registration takes a second, and thirty students must not queue."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def holding(self, *keys: str) -> Iterator[None]:
        with self._guard:
            locks = [self._locks.setdefault(key, threading.Lock()) for key in sorted(keys)]
        for lock in locks:  # always in the same order: two claims never wait on each other
            lock.acquire()
        try:
            yield
        finally:
            for lock in reversed(locks):
                lock.release()


@dataclass(frozen=True)
class Outcome:
    """What registering for a student came to: the registration, or the problem for the
    student; `conflict` when the cloud holds the name with another key (the API's 409),
    `outside` when it holds it with this key from before the class."""

    problem: str
    registration: Registration | None = None
    conflict: bool = False
    outside: bool = False


class Registrar:
    """Registering a student's CSR in the class's cloud: the name must be free in the class,
    a student has at most MAX_DEVICES, and a thing the cloud had before the class is nobody's
    here. One registration at a time per device name and per student."""

    def __init__(self, store: ClassStore, cloud: Cloud) -> None:
        self.store, self.cloud = store, cloud
        self._claims = Claims()

    def register(
        self, username: str, csr: certs.Csr, slot: int, *, class_board: bool = False
    ) -> Outcome:
        """Register `csr` (its key in `slot`) in the cloud for `username`: the registration,
        or why not (a message for the student). `class_board`: a virtual board the class
        provisions, the only registration that may have a BOARD_PREFIX name."""
        # Before anything is held or counted: a key AWS would refuse takes no device place.
        problem = certs.signing_problem(csr)
        if problem:
            return Outcome(problem)
        thing = csr.common_name
        if not class_board and thing.casefold().startswith(BOARD_PREFIX):
            return Outcome(
                f"Device names that start with '{BOARD_PREFIX}' are kept for the class's own "
                "virtual boards. Capture a new CSR with another name (notebook 01, or the CSR "
                "sketch's name question), such as your initials and a number."
            )
        # One claim for every spelling of a name: two case variants must not pass at once.
        with self._claims.holding(f"student:{username}", f"thing:{thing.casefold()}"):
            return self._register(username, csr, slot)

    def _register(self, username: str, csr: certs.Csr, slot: int) -> Outcome:
        store, cloud, thing = self.store, self.cloud, csr.common_name
        variant = _case_variant(store, thing)
        if variant is not None:
            # Topics, folders on Windows and macOS, and people read these as one name.
            return Outcome(
                f"The device name '{printable(thing)}' differs from '{printable(variant)}', a "
                "device already in this class, only in upper and lower case, so the two would "
                "be mistaken for each other. Capture a new CSR with another name (notebook 01, "
                "or the CSR sketch's name question)."
            )
        owner = store.owner(thing)
        if owner is not None and owner != username:
            return Outcome(
                f"The device name '{printable(thing)}' is taken by another student in this class. "
                "Capture a new CSR with another name (notebook 01, or the CSR sketch's name "
                "question)."
            )
        if owner is None and len(store.things_of(username)) >= MAX_DEVICES:
            return Outcome(
                f"You have {MAX_DEVICES} devices registered already, the most a student may have: "
                "remove one on My devices first."
            )
        try:
            registration = cloud.register(csr)
        except ThingTakenError:
            return Outcome(
                f"'{printable(thing)}' is already registered with another key. If it is yours, "
                "remove it on My devices and register again.",
                conflict=True,
            )
        except KitError as error:
            return Outcome(str(error))
        if owner is None and not registration.created:
            # The cloud had it before this class did (a CSR is no secret: anyone may have a
            # copy), so nobody here may take it over.
            return Outcome(
                f"'{printable(thing)}' was registered in the cloud outside this class. Ask your "
                "teacher, or capture a CSR with another device name.",
                outside=True,
            )
        store.claim(thing, username)
        store.keep_registration(thing, registration, slot)
        return Outcome("", registration)


def _case_variant(store: ClassStore, thing: str) -> str | None:
    """A device of the class whose name is `thing` in other upper and lower case, if any."""
    folded = thing.casefold()
    return next((t for t in store.all_things() if t.casefold() == folded and t != thing), None)
