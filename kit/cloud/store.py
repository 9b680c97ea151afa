"""The local cloud's database (SQLite, WAL): things, certificates, and recorded messages.

The broker process, notebooks and the CLI open it at the same time; WAL lets readers and the
one writer work side by side. The recorder keeps every message on things/+/environment and
things/+/led/state: the data store dashboards backfill from.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS things (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
    id TEXT PRIMARY KEY, thing TEXT NOT NULL, pem TEXT NOT NULL,
    status TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, thing TEXT NOT NULL, topic TEXT NOT NULL,
    payload BLOB NOT NULL, received REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_thing ON messages (thing, received);
"""
RECORDED_SUFFIXES = ("/environment", "/led/state")


@dataclass(frozen=True)
class Message:
    """One recorded message."""

    thing: str
    topic: str
    payload: bytes
    received: float  # Unix time


class Store:
    """One connection to the cloud database; use one per thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing: a registration that fails halfway leaves nothing behind."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # Things and certificates

    def things(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT name FROM things ORDER BY name")]

    def certificates_of(self, thing: str) -> list[tuple[str, str, str]]:
        """(id, pem, status) of each certificate attached to `thing`."""
        return list(
            self.db.execute(
                "SELECT id, pem, status FROM certificates WHERE thing = ? ORDER BY created",
                (thing,),
            )
        )

    def active_certificate(self, cert_id: str) -> str | None:
        """The thing an ACTIVE certificate is attached to, or None."""
        row = self.db.execute(
            "SELECT thing FROM certificates WHERE id = ? AND status = 'ACTIVE'", (cert_id,)
        ).fetchone()
        return row[0] if row else None

    # The recorder

    def record(self, topic: str, payload: bytes, received: float | None = None) -> bool:
        """Keep a message if it is one the recorder keeps; return whether it did."""
        levels = topic.split("/")
        if len(levels) < 3 or levels[0] != "things" or not topic.endswith(RECORDED_SUFFIXES):
            return False
        self.db.execute(
            "INSERT INTO messages (thing, topic, payload, received) VALUES (?, ?, ?, ?)",
            (levels[1], topic, bytes(payload), received or time.time()),
        )
        return True

    def messages(
        self,
        thing: str | None = None,
        since: float | None = None,
        until: float | None = None,
        latest: int | None = None,
        topic_suffix: str | None = None,
    ) -> list[Message]:
        """Recorded messages, oldest first: one thing or all, a time range, or the latest N."""
        where, args = [], []
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
