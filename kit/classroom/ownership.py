"""Whose device is whose, and removing devices from the class and its cloud together.

The class store says who owns each thing; the cloud holds the thing and its certificate. A
device leaves both, and one the cloud no longer has (removed with `kit unregister`, or by the
instructor in the AWS console) still leaves the class instead of blocking its owner's place.
"""

from __future__ import annotations

from kit.classroom.store import ClassStore, Session
from kit.cloud import Cloud


def teaches(session: Session) -> bool:
    """Whether this person is the class's instructor."""
    return session.account.role == "instructor"


def may_see(store: ClassStore, session: Session, thing: str) -> bool:
    """Whether this person may see and command `thing`: their own, or any in the class for
    the instructor (never a thing the class does not hold)."""
    owner = store.owner(thing)
    return owner is not None and (owner == session.account.username or teaches(session))


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
