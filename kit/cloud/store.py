"""The local cloud's database (SQLite, WAL): things, principals, and recorded messages.

The broker process, notebooks and the CLI open it at the same time; WAL lets readers and the
writers work side by side. A principal is a certificate the cloud knows: its fingerprint (the
certificate id), its role (device or observer), the name it acts as, its owner and its status.
The broker decides rights from this table, never from a name in a certificate. The recorder
keeps the messages on things/+/environment and things/+/led/state (the data store dashboards
backfill from) and, of the lifecycle events, the latest of each client (presence).

What it keeps is bounded: of a payload, only as much as anyone reads (STORED_BYTES, with its
size), and of a device, at most DEVICE_QUOTA bytes: past that its oldest messages make room
for the new, and the writer is told once an hour so the instructor hears of it. A student has
at most five devices (kit.classroom.ownership.MAX_DEVICES), and a removed device's messages
go with it, so a student holds at most five quotas.
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
-- payload: its first STORED_BYTES; size: how long it was.
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, thing TEXT NOT NULL, topic TEXT NOT NULL,
    payload BLOB NOT NULL, received REAL NOT NULL, size INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS messages_by_thing ON messages (thing, received);
CREATE TABLE IF NOT EXISTS presence (
    thing TEXT PRIMARY KEY, connected INTEGER NOT NULL, changed REAL NOT NULL);
-- What each thing's messages cost (ROW_BYTES each and their payload and topic), kept by
-- every write and removal so a quota costs one read; full: when it last reached its quota.
CREATE TABLE IF NOT EXISTS usage (
    thing TEXT PRIMARY KEY, bytes INTEGER NOT NULL, rows INTEGER NOT NULL, full REAL);
"""
# Before principals, device certificates had a table of their own; move them over once.
MIGRATE_CERTIFICATES = """
INSERT OR IGNORE INTO principals (fingerprint, role, name, owner, status, pem, created)
    SELECT id, 'device', thing, '', status, pem, created FROM certificates;
DROP TABLE certificates;
"""
# Version 4 shortens the payloads kept before it and counts what each thing holds.
MIGRATE_QUOTAS = """
UPDATE messages SET payload = substr(payload, 1, {stored}), size = length(payload);
DELETE FROM usage;
INSERT INTO usage (thing, bytes, rows)
    SELECT thing, SUM({cost}), COUNT(*) FROM messages GROUP BY thing;
"""
SCHEMA_VERSION = 4  # 1: certificates; 2: principals; 3: presence; 4: sizes and usage
# The readers (a page's story, the API's history) take payloads of at most 2 KB, and a reading
# is tens of bytes: the rest of a bigger payload is never read, so it is never written.
STORED_BYTES = 2048
ROW_BYTES = 64  # what a row costs besides its payload and topic (id, time, thing, index)
COST = f"length(payload) + length(topic) + {ROW_BYTES}"  # a row's cost, in SQL
# A board sends a reading every 10 s (about 150 bytes a row): a quota is days of them, and
# far more than the hour a page shows. Five devices a student: 40 MB each at most.
DEVICE_QUOTA = 8 * 1024 * 1024
TRIM_TO = 0.9  # a thing over its quota is brought down to this share of it, not one row
FULL_NOTICE_EVERY = 3600.0  # seconds between two notices that one thing is at its quota
RECORDED_SUFFIXES = ("/environment", "/led/state")
PRESENCE_EVENTS = ("$aws/events/presence/connected/", "$aws/events/presence/disconnected/")
DEVICE, OBSERVER = "device", "observer"
Row = tuple[str, bytes, float, int]  # a message as the store keeps it: topic, payload, when, size


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
class Recorded:
    """What a batch came to: how many messages were kept, and the things that reached their
    quota (their oldest messages made room) and were not said to within the last hour."""

    kept: int
    full: tuple[str, ...] = ()


@dataclass(frozen=True)
class Usage:
    """What the messages of a thing hold, against its quota."""

    thing: str
    bytes: int
    rows: int
    full: float | None  # when it last reached its quota (Unix time), None: never


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
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
            legacy = self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'certificates'"
            ).fetchone()
            if legacy:
                self.db.executescript(f"BEGIN IMMEDIATE; {MIGRATE_CERTIFICATES} COMMIT;")
            if version < 4:
                self._count_usage()
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _count_usage(self) -> None:
        """From version 3: give messages their size, shorten their payloads, count usage (in
        one transaction: another process may be opening the same database)."""
        with self.transaction() as db:
            if db.execute("PRAGMA user_version").fetchone()[0] >= 4:
                return  # the other process did it: the sizes are of shortened payloads now
            columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
            if "size" not in columns:
                db.execute("ALTER TABLE messages ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
            script = MIGRATE_QUOTAS.format(stored=STORED_BYTES, cost=COST)
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
        """Forget a thing, its device certificates and its recorded messages; False if there
        was no such thing."""
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM things WHERE name = ?", (name,)).fetchone():
                return False
            # The broker notices within a fraction of a second and closes its connections.
            db.execute("DELETE FROM principals WHERE role = 'device' AND name = ?", (name,))
            db.execute("DELETE FROM things WHERE name = ?", (name,))
            db.execute("DELETE FROM presence WHERE thing = ?", (name,))
            # Its messages go with it (a removed device's data is nobody's to read).
            db.execute("DELETE FROM messages WHERE thing = ?", (name,))
            db.execute("DELETE FROM usage WHERE thing = ?", (name,))
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
        return self.record_many([shortened(topic, payload, received or time.time())]).kept == 1

    def record_many(self, rows: list[Row]) -> Recorded:
        """Keep a batch of (topic, payload, received, size) rows (see `shortened`) in one
        transaction, each thing within its quota; say how many and which things are full."""
        kept = [
            (topic.split("/")[1], topic, payload[:STORED_BYTES], received, size)
            for topic, payload, received, size in rows
            if recorded(topic) and not topic.startswith(PRESENCE_EVENTS)
        ]
        # Of lifecycle events only the latest state of each client matters.
        changes = [
            (topic.rsplit("/", 1)[1], topic.startswith(PRESENCE_EVENTS[0]), received)
            for topic, _payload, received, _size in rows
            if recorded(topic) and topic.startswith(PRESENCE_EVENTS)
        ]
        added: dict[str, list[int]] = {}  # thing -> [bytes, rows] this batch adds
        for thing, topic, payload, _received, _size in kept:
            cost = added.setdefault(thing, [0, 0])
            cost[0] += len(payload) + len(topic) + ROW_BYTES  # as COST counts it
            cost[1] += 1
        full: list[str] = []
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO messages (thing, topic, payload, received, size)"
                " VALUES (?, ?, ?, ?, ?)",
                kept,
            )
            db.executemany(
                "INSERT INTO presence (thing, connected, changed) VALUES (?, ?, ?)"
                " ON CONFLICT (thing) DO UPDATE SET connected = excluded.connected,"
                " changed = excluded.changed WHERE excluded.changed >= presence.changed",
                changes,
            )
            for thing, (size, count) in added.items():
                db.execute(
                    "INSERT INTO usage (thing, bytes, rows) VALUES (?, ?, ?)"
                    " ON CONFLICT (thing) DO UPDATE SET bytes = bytes + excluded.bytes,"
                    " rows = rows + excluded.rows",
                    (thing, size, count),
                )
                used, last_full = db.execute(
                    "SELECT bytes, full FROM usage WHERE thing = ?", (thing,)
                ).fetchone()
                if used > DEVICE_QUOTA:
                    self._trim(db, thing, used - int(DEVICE_QUOTA * TRIM_TO))
                    now = time.time()
                    if last_full is None or now - last_full >= FULL_NOTICE_EVERY:
                        db.execute("UPDATE usage SET full = ? WHERE thing = ?", (now, thing))
                        full.append(thing)
        return Recorded(len(kept) + len(changes), tuple(full))

    @staticmethod
    def _trim(db: sqlite3.Connection, thing: str, excess: int) -> None:
        """Forget the oldest messages of `thing` that add up to at least `excess` bytes."""
        freed = count = 0
        last: tuple[float, int] | None = None
        rows = db.execute(
            f"SELECT received, id, {COST} FROM messages WHERE thing = ? ORDER BY received, id",
            (thing,),
        )
        for received, row_id, cost in rows:
            freed, count, last = freed + cost, count + 1, (received, row_id)
            if freed >= excess:
                break
        rows.close()  # before the DELETE: its table is the one the read was walking
        if last is None:
            return
        db.execute(
            "DELETE FROM messages WHERE thing = ? AND (received < ? OR (received = ? AND id <= ?))",
            (thing, last[0], last[0], last[1]),
        )
        db.execute(
            "UPDATE usage SET bytes = bytes - ?, rows = rows - ? WHERE thing = ?",
            (freed, count, thing),
        )

    def usage(self, thing: str) -> Usage:
        """What the recorded messages of `thing` hold, against its quota."""
        row = self.db.execute(
            "SELECT bytes, rows, full FROM usage WHERE thing = ?", (thing,)
        ).fetchone()
        return Usage(thing, *row) if row else Usage(thing, 0, 0, None)

    def forget_messages(self, thing: str) -> int:
        """Remove every recorded message of `thing` (it was removed); return how many."""
        with self.transaction() as db:
            db.execute("DELETE FROM usage WHERE thing = ?", (thing,))
            return db.execute("DELETE FROM messages WHERE thing = ?", (thing,)).rowcount

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
        with self.transaction() as db:
            gone = db.execute(
                f"SELECT thing, SUM({COST}), COUNT(*) FROM messages WHERE received < ?"
                " GROUP BY thing",
                (cutoff,),
            ).fetchall()
            db.executemany(
                "UPDATE usage SET bytes = bytes - ?, rows = rows - ? WHERE thing = ?",
                [(size, count, thing) for thing, size, count in gone],
            )
            return db.execute("DELETE FROM messages WHERE received < ?", (cutoff,)).rowcount

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
        only those that had at most `max_bytes` if given (any longer than STORED_BYTES is kept
        shortened)."""
        where: list[str] = []
        args: list[object] = []
        if max_bytes is not None:  # the size it had: a longer payload is kept shortened
            where.append("size <= ?")
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


def shortened(topic: str, payload: bytes, received: float) -> Row:
    """The row the store keeps of a message: its payload cut to STORED_BYTES, and its size
    (the recorder's queue holds only that much of a message, too)."""
    return topic, bytes(payload[:STORED_BYTES]), received, len(payload)


def recorded(topic: str) -> bool:
    """Whether the recorder keeps messages on `topic`."""
    levels = topic.split("/")
    if topic.startswith(PRESENCE_EVENTS):
        return len(levels) == 5 and bool(levels[4])
    return len(levels) >= 3 and levels[0] == "things" and topic.endswith(RECORDED_SUFFIXES)
