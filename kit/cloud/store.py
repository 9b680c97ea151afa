"""The local cloud's database (SQLite, WAL): things, principals, and recorded messages.

The broker process, notebooks and the CLI open it at the same time; WAL lets readers and the
writers work side by side. A principal is a certificate the cloud knows: its fingerprint (the
certificate id), its role (device or observer), the name it acts as, its owner and its status.
The broker decides rights from this table, never from a name in a certificate. The recorder
keeps every message on things/+/environment and things/+/led/state (the data store dashboards
backfill from) and, of the lifecycle events, the latest of each client (presence).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import cast

from kit.errors import CloudError
from kit.places import damaged, private_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS things (name TEXT PRIMARY KEY, created REAL NOT NULL);
-- role: 'device' (name = its thing) or 'observer' (watches devices; name = who it is).
-- owner: who the principal belongs to ('' = this computer's user, the instructor).
CREATE TABLE IF NOT EXISTS principals (
    fingerprint TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, pem TEXT NOT NULL,
    created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS principals_by_name ON principals (name);
-- Bumped by every change to principals, so the broker notices a revocation in one cheap read.
CREATE TABLE IF NOT EXISTS registry_version (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER);
INSERT OR IGNORE INTO registry_version VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS principals_added AFTER INSERT ON principals
    BEGIN UPDATE registry_version SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS principals_changed AFTER UPDATE ON principals
    BEGIN UPDATE registry_version SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS principals_removed AFTER DELETE ON principals
    BEGIN UPDATE registry_version SET n = n + 1; END;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, thing TEXT NOT NULL, topic TEXT NOT NULL,
    payload BLOB NOT NULL, received REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_thing ON messages (thing, received);
CREATE TABLE IF NOT EXISTS presence (
    thing TEXT PRIMARY KEY, connected INTEGER NOT NULL, changed REAL NOT NULL);
"""
# Before principals, device certificates had a table of their own; move them over once.
MIGRATE_CERTIFICATES = """
INSERT OR IGNORE INTO principals (fingerprint, role, name, owner, status, pem, created)
    SELECT id, 'device', thing, '', status, pem, created FROM certificates;
DROP TABLE certificates;
"""
SCHEMA_VERSION = 3  # 1: certificates; 2: principals; 3: presence
RECORDED_SUFFIXES = ("/environment", "/led/state")
PRESENCE_EVENTS = ("$aws/events/presence/connected/", "$aws/events/presence/disconnected/")
DEVICE, OBSERVER = "device", "observer"


@dataclass(frozen=True)
class Principal:
    """A certificate the cloud knows, and what it may act as."""

    fingerprint: str  # the certificate id: SHA-256 of the DER, in hex
    role: str  # DEVICE or OBSERVER
    name: str  # a device's thing name; an observer's own name
    owner: str
    status: str  # 'ACTIVE' (anything else is refused)


@dataclass(frozen=True)
class Message:
    """One recorded message."""

    thing: str
    topic: str
    payload: bytes
    received: float  # Unix time


@dataclass(frozen=True)
class Presence:
    """Whether a thing is connected, from the lifecycle events the broker published."""

    thing: str
    connected: bool | None  # None: no lifecycle event of it was ever seen
    changed: float | None  # when it last connected or disconnected (Unix time)
    last_message: float | None  # when its last recorded message arrived

    @property
    def last_seen(self) -> float | None:
        """The latest sign of life: a message or a lifecycle event."""
        times = [t for t in (self.changed, self.last_message) if t is not None]
        return max(times) if times else None


_AFTER_REPAIR = (
    "and start the local cloud again: it starts with no devices, so register them again "
    "(notebook 02)"
)


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock at once (no upgrade deadlock between two
    writers), committed if the block finishes and rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Store:
    """One connection to the cloud database; use one per thread."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            what = "a link" if path.is_symlink() else "not a file"
            raise damaged(path, f"it is {what}, where the kit keeps its database", _AFTER_REPAIR)
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        # 0600 before the first write: SQLite gives its -wal and -shm files the database's mode.
        # (Never open the file outside SQLite here: closing any descriptor of it drops the POSIX
        # locks of every connection in this process, and another process then deletes the WAL.)
        if os.name == "posix":
            with contextlib.suppress(OSError):
                os.chmod(path, 0o600)
        try:
            self._open()
        except sqlite3.DatabaseError as error:
            self.db.close()
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise CloudError(  # busy, not damaged: the 30 s wait ran out
                    f"{path} stayed locked by another program for 30 s. Wait until the other "
                    "kit command finishes, or stop the local cloud (course.stop(), or "
                    "`kit stop`) and retry."
                ) from None
            raise damaged(path, f"SQLite cannot read it ({error})", _AFTER_REPAIR) from None

    def _open(self) -> None:
        """Set the connection up; create or migrate the schema when the database needs it."""
        self.db.execute("PRAGMA synchronous=NORMAL")
        # Readers open the database while the recorder writes: only a new or older database
        # needs the write lock that creating or migrating the schema takes.
        if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
            legacy = self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'certificates'"
            ).fetchone()
            if legacy:
                self.db.executescript(f"BEGIN IMMEDIATE; {MIGRATE_CERTIFICATES} COMMIT;")
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """All or nothing: a registration that fails halfway leaves nothing behind."""
        return immediate(self.db)

    # Things and certificates

    def things(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT name FROM things ORDER BY name")]

    def add_thing(self, name: str, principal: Principal, pem: str) -> None:
        """Record a thing (if new) with a device certificate (inside a transaction)."""
        self.db.execute(
            "INSERT OR IGNORE INTO things (name, created) VALUES (?, ?)", (name, time.time())
        )
        self.add_principal(principal, pem)

    def remove_thing(self, name: str) -> bool:
        """Forget a thing and its device certificates; False if there was no such thing."""
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM things WHERE name = ?", (name,)).fetchone():
                return False
            # The broker notices within a fraction of a second and closes its connections.
            db.execute("DELETE FROM principals WHERE role = 'device' AND name = ?", (name,))
            db.execute("DELETE FROM things WHERE name = ?", (name,))
            db.execute("DELETE FROM presence WHERE thing = ?", (name,))
        return True

    def certificates_of(self, thing: str) -> list[tuple[str, str, str]]:
        """(id, pem, status) of each device certificate of `thing`."""
        return list(
            self.db.execute(
                "SELECT fingerprint, pem, status FROM principals"
                " WHERE role = 'device' AND name = ? ORDER BY created",
                (thing,),
            )
        )

    def add_principal(self, principal: Principal, pem: str) -> None:
        """Record a certificate and its role (inside a transaction where that matters)."""
        self.db.execute(
            "INSERT INTO principals (fingerprint, role, name, owner, status, pem, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*astuple(principal), pem, time.time()),
        )

    def principal(self, fingerprint: str) -> Principal | None:
        """The principal a certificate is, or None for a certificate the cloud never issued."""
        row = self.db.execute(
            "SELECT fingerprint, role, name, owner, status FROM principals WHERE fingerprint = ?",
            (fingerprint,),
        ).fetchone()
        return Principal(*row) if row else None

    def active_fingerprints(self) -> set[str]:
        """The fingerprints of every ACTIVE principal."""
        rows = self.db.execute("SELECT fingerprint FROM principals WHERE status = 'ACTIVE'")
        return {row[0] for row in rows}

    def registry_version(self) -> int:
        """A number that changes whenever a principal is added, changed or removed."""
        return cast(int, self.db.execute("SELECT n FROM registry_version").fetchone()[0])

    # The recorder

    def record(self, topic: str, payload: bytes, received: float | None = None) -> bool:
        """Keep a message if it is one the recorder keeps; return whether it did."""
        if not recorded(topic):
            return False  # without taking the write lock
        return self.record_many([(topic, bytes(payload), received or time.time())]) == 1

    def record_many(self, rows: list[tuple[str, bytes, float]]) -> int:
        """Keep a batch of (topic, payload, received) in one transaction; return how many."""
        kept = [
            (topic.split("/")[1], topic, payload, received)
            for topic, payload, received in rows
            if recorded(topic) and not topic.startswith(PRESENCE_EVENTS)
        ]
        # Of lifecycle events only the latest state of each client matters.
        changes = [
            (topic.rsplit("/", 1)[1], topic.startswith(PRESENCE_EVENTS[0]), received)
            for topic, _payload, received in rows
            if recorded(topic) and topic.startswith(PRESENCE_EVENTS)
        ]
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO messages (thing, topic, payload, received) VALUES (?, ?, ?, ?)", kept
            )
            db.executemany(
                "INSERT INTO presence (thing, connected, changed) VALUES (?, ?, ?)"
                " ON CONFLICT (thing) DO UPDATE SET connected = excluded.connected,"
                " changed = excluded.changed WHERE excluded.changed >= presence.changed",
                changes,
            )
        return len(kept) + len(changes)

    def presence(self, thing: str) -> Presence:
        """Whether `thing` is connected, and when it was last heard from."""
        row = self.db.execute(
            "SELECT connected, changed FROM presence WHERE thing = ?", (thing,)
        ).fetchone()
        last = self.db.execute(
            "SELECT MAX(received) FROM messages WHERE thing = ?", (thing,)
        ).fetchone()[0]
        if row is None:
            return Presence(thing, None, None, last)
        return Presence(thing, bool(row[0]), row[1], last)

    def forget_before(self, cutoff: float) -> int:
        """Remove recorded messages received before `cutoff` (Unix time); return how many."""
        return self.db.execute("DELETE FROM messages WHERE received < ?", (cutoff,)).rowcount

    def messages(
        self,
        thing: str | None = None,
        since: float | None = None,
        until: float | None = None,
        latest: int | None = None,
        topic_suffix: str | None = None,
        max_bytes: int | None = None,
    ) -> list[Message]:
        """Recorded messages, oldest first: one thing or all, a time range, or the latest N;
        only those of at most `max_bytes` if given."""
        where: list[str] = []
        args: list[object] = []
        if max_bytes is not None:
            where.append("length(payload) <= ?")
            args.append(max_bytes)
        if thing is not None:
            where.append("thing = ?")
            args.append(thing)
        if since is not None:
            where.append("received >= ?")
            args.append(since)
        if until is not None:
            where.append("received <= ?")
            args.append(until)
        if topic_suffix is not None:
            where.append("topic LIKE ?")
            args.append("%" + topic_suffix)
        sql = "SELECT thing, topic, payload, received FROM messages"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY received DESC, id DESC"
        if latest is not None:
            sql += " LIMIT ?"
            args.append(latest)
        rows = [Message(*row) for row in self.db.execute(sql, args)]
        return rows[::-1]


def recorded(topic: str) -> bool:
    """Whether the recorder keeps messages on `topic`."""
    levels = topic.split("/")
    if topic.startswith(PRESENCE_EVENTS):
        return len(levels) == 5 and bool(levels[4])
    return len(levels) >= 3 and levels[0] == "things" and topic.endswith(RECORDED_SUFFIXES)
