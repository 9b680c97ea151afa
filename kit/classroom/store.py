"""The class server's own state: accounts, sessions, and which student owns which thing.

One SQLite database (WAL) in the class folder, written only through this module. The cloud stays
the source of truth for things and certificates; this store only says whose they are. A session
is kept as the SHA-256 of its random id, so a copy of the database does not give anyone a
session; passwords are kept only as argon2 hashes (kit.classroom.passwords).

Every account has a credential version, raised by a new password and by `revoke`: a session or
token is issued only in the same statement that finds the version the login checked still
current, so a login racing a reset can never leave a way in made with the old password.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from kit.cloud import Registration
from kit.cloud.store import immediate
from kit.errors import ClassError
from kit.places import private_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY, name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('student', 'instructor')),
    password_hash TEXT NOT NULL, created REAL NOT NULL,
    credentials INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    csrf TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (username);
-- registration: the JSON of what registering gave back (kit.cloud.Registration), kept so the
-- student can download it again; '' while the cloud is still registering it.
CREATE TABLE IF NOT EXISTS things (
    thing TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    registered REAL NOT NULL, registration TEXT NOT NULL DEFAULT '');
-- When each student last sent a CSR (the instructor's "CSR received").
CREATE TABLE IF NOT EXISTS csr_received (
    username TEXT PRIMARY KEY REFERENCES accounts (username) ON DELETE CASCADE,
    at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS things_by_owner ON things (owner);
-- Failed logins per account and client address: the backoff (kit.classroom.passwords). The
-- name is kept only as a keyed hash (a password typed into the username field is never
-- written down), and a row is forgotten once its window is over.
CREATE TABLE IF NOT EXISTS failed_logins (
    who TEXT NOT NULL, client TEXT NOT NULL, count INTEGER NOT NULL, last REAL NOT NULL,
    PRIMARY KEY (who, client));
-- The first versions kept the names typed in clear: forgotten on upgrade.
DROP TABLE IF EXISTS failures;
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- The notebooks' bearer tokens (kit.classroom.api), kept hashed as session ids are.
CREATE TABLE IF NOT EXISTS tokens (
    id_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    created REAL NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens (username);
"""
Role = Literal["student", "instructor"]
SESSION_SECONDS = 12 * 3600  # a school day; a new login after that
TOKEN_SECONDS = 90 * 24 * 3600  # a notebook's token lasts a term; the instructor can end it
TOKENS_EACH = 5  # live notebook tokens per person (a few laptops); a new one ends the oldest
SESSIONS_EACH = 10  # live browser sessions per person, likewise


@dataclass(frozen=True)
class Account:
    """A person in the class (the password hash stays in the store)."""

    username: str
    name: str
    role: Role


@dataclass(frozen=True)
class Session:
    """A logged-in browser: who, its CSRF token, and until when."""

    account: Account
    csrf: str
    expires: float


@dataclass(frozen=True)
class TokenInfo:
    """A live notebook token as its owner may see it: a short id (never the token), when."""

    id: str
    created: float
    expires: float


def session_key(session_id: str) -> str:
    """How a session id is kept: its SHA-256, never the id itself."""
    return hashlib.sha256(session_id.encode()).hexdigest()


class ClassStore:
    """The class database; safe to share between the server's threads."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        private_dir(path.parent)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ClassError(f"{path} is not a plain file: move it away and run the command again.")
        self.path = path
        self._clock = clock
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opening = threading.Lock()
        # The key of the failed-login names: this process's own, never written anywhere, so
        # the table names nobody even to someone holding a copy of the database (a restart
        # starts the counts over, as a quiet window does).
        self._failure_key = secrets.token_bytes(32)
        self.db.execute("SELECT 1")  # creates the file
        # 0600 before the first write: SQLite gives its -wal and -shm files the database's mode,
        # and they hold password and session hashes too.
        path.chmod(0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        columns = {str(row[1]) for row in self.db.execute("PRAGMA table_info(accounts)")}
        if "credentials" not in columns:  # a class created before credential versions
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it
                self.db.execute(
                    "ALTER TABLE accounts ADD COLUMN credentials INTEGER NOT NULL DEFAULT 0"
                )

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection: the site answers requests in many threads at once, and
        one connection cannot hold two threads' transactions."""
        connection: sqlite3.Connection | None = getattr(self._local, "db", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, timeout=30, check_same_thread=False, isolation_level=None
            )
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.db = connection
            with self._opening:
                self._opened.append(connection)
        return connection

    def close(self) -> None:
        """Close every thread's connection."""
        with self._opening:
            for connection in self._opened:
                connection.close()
            self._opened.clear()
        self._local = threading.local()

    def __enter__(self) -> ClassStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write at a time, all or nothing."""
        return immediate(self.db)

    # Facts about the class (its name, address, web certificate fingerprint)

    def fact(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_fact(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (key, value))

    # Accounts

    def add_account(self, account: Account, password_hash: str) -> None:
        """Add a person; ClassError if the username is taken."""
        self.add_accounts([(account, password_hash)])

    def add_accounts(self, accounts: list[tuple[Account, str]]) -> None:
        """Add people with their password hashes, all or none; ClassError if a username is
        taken."""
        now = self._clock()
        try:
            with self.transaction() as db:
                db.executemany(
                    "INSERT INTO accounts (username, name, role, password_hash, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(a.username, a.name, a.role, hashed, now) for a, hashed in accounts],
                )
        except sqlite3.IntegrityError:
            raise ClassError(
                "One of these usernames is taken already: nobody was added. `kit class roster "
                "list` shows who is in the class."
            ) from None

    def account(self, username: str) -> Account | None:
        row = self.db.execute(
            "SELECT username, name, role FROM accounts WHERE username = ?", (username,)
        ).fetchone()
        return None if row is None else Account(*row)

    def accounts(self) -> list[Account]:
        rows = self.db.execute("SELECT username, name, role FROM accounts ORDER BY role, username")
        return [Account(*row) for row in rows]

    def password_hash(self, username: str) -> str | None:
        row = self.db.execute(
            "SELECT password_hash FROM accounts WHERE username = ?", (username,)
        ).fetchone()
        return None if row is None else str(row[0])

    def credentials(self, username: str) -> tuple[str, int] | None:
        """The password hash to check and the credential version it belongs to."""
        row = self.db.execute(
            "SELECT password_hash, credentials FROM accounts WHERE username = ?", (username,)
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def set_password_hash(self, username: str, password_hash: str) -> None:
        """A new password; every session and notebook token of that person ends, and so does
        every login still checking the old one."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE accounts SET password_hash = ?, credentials = credentials + 1 "
                "WHERE username = ?",
                (password_hash, username),
            ).rowcount
            if not changed:
                raise ClassError(f"There is no account called '{username}'.")
            db.execute("DELETE FROM sessions WHERE username = ?", (username,))
            db.execute("DELETE FROM tokens WHERE username = ?", (username,))

    def revoke(self, username: str) -> int:
        """End every browser session and notebook token of `username`, and every login of
        theirs still being checked (a lost laptop); return how many tokens there were."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE accounts SET credentials = credentials + 1 WHERE username = ?",
                (username,),
            ).rowcount
            if not changed:
                raise ClassError(f"There is no account called '{username}'.")
            db.execute("DELETE FROM sessions WHERE username = ?", (username,))
            return int(db.execute("DELETE FROM tokens WHERE username = ?", (username,)).rowcount)

    def remove_account(self, username: str) -> list[str]:
        """Remove a person and their sessions; return the things they owned (for the cloud)."""
        with self.transaction() as db:
            things = [
                str(r[0])
                for r in db.execute("SELECT thing FROM things WHERE owner = ?", (username,))
            ]
            if not db.execute("DELETE FROM accounts WHERE username = ?", (username,)).rowcount:
                raise ClassError(f"There is no account called '{username}'.")
        return things

    # Sessions

    def start_session(
        self, username: str, session_id: str, csrf: str, credentials: int
    ) -> Session | None:
        """Record a new session (its id is kept hashed) if `credentials`, the version the
        login checked, is still the account's; None if the password changed meanwhile. The
        person's oldest sessions beyond SESSIONS_EACH end."""
        now = self._clock()
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            made = db.execute(
                "INSERT INTO sessions SELECT ?, username, ?, ?, ? FROM accounts "
                "WHERE username = ? AND credentials = ?",
                (session_key(session_id), csrf, now, now + SESSION_SECONDS, username, credentials),
            ).rowcount
            _keep_newest(db, "sessions", username, SESSIONS_EACH)
        account = self.account(username)
        if not made or account is None:
            return None
        return Session(account, csrf, now + SESSION_SECONDS)

    def session(self, session_id: str) -> Session | None:
        """The live session with this id, or None (unknown, ended or expired)."""
        row = self.db.execute(
            "SELECT a.username, a.name, a.role, s.csrf, s.expires FROM sessions s "
            "JOIN accounts a ON a.username = s.username WHERE s.id_hash = ? AND s.expires > ?",
            (session_key(session_id), self._clock()),
        ).fetchone()
        return None if row is None else Session(Account(*row[:3]), row[3], row[4])

    # Notebook tokens

    def issue_token(self, username: str, token: str, credentials: int) -> float | None:
        """Keep a new token of `username` (hashed) if `credentials`, the version the login
        checked, is still the account's; return when it expires (None: the password changed
        meanwhile). The person's oldest tokens beyond TOKENS_EACH end."""
        now = self._clock()
        with self.transaction() as db:
            db.execute("DELETE FROM tokens WHERE expires < ?", (now,))
            made = db.execute(
                "INSERT INTO tokens SELECT ?, username, ?, ? FROM accounts "
                "WHERE username = ? AND credentials = ?",
                (session_key(token), now, now + TOKEN_SECONDS, username, credentials),
            ).rowcount
            _keep_newest(db, "tokens", username, TOKENS_EACH)
        return now + TOKEN_SECONDS if made else None

    def token_account(self, token: str) -> Account | None:
        """The person a live token belongs to, or None (unknown, revoked or expired)."""
        row = self.db.execute(
            "SELECT a.username, a.name, a.role FROM tokens t "
            "JOIN accounts a ON a.username = t.username WHERE t.id_hash = ? AND t.expires > ?",
            (session_key(token), self._clock()),
        ).fetchone()
        return None if row is None else Account(*row)

    def revoke_tokens(self, username: str) -> int:
        """End every notebook token of `username` (and the logins being checked); return how
        many there were."""
        with self.transaction() as db:
            db.execute(
                "UPDATE accounts SET credentials = credentials + 1 WHERE username = ?",
                (username,),
            )
            return int(db.execute("DELETE FROM tokens WHERE username = ?", (username,)).rowcount)

    def tokens_of(self, username: str) -> list[TokenInfo]:
        """The live notebook tokens of `username`, newest first."""
        rows = self.db.execute(
            "SELECT id_hash, created, expires FROM tokens WHERE username = ? AND expires > ? "
            "ORDER BY created DESC, rowid DESC",
            (username, self._clock()),
        )
        return [TokenInfo(token_id(str(h)), float(c), float(e)) for h, c, e in rows]

    def end_token(self, username: str, token: str) -> bool:
        """End one token of `username`, named by the token itself or by its short id."""
        with self.transaction() as db:
            for hashed in db.execute(
                "SELECT id_hash FROM tokens WHERE username = ?", (username,)
            ).fetchall():
                if hashed[0] == session_key(token) or token_id(str(hashed[0])) == token:
                    db.execute("DELETE FROM tokens WHERE id_hash = ?", (hashed[0],))
                    return True
        return False

    def end_session(self, session_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE id_hash = ?", (session_key(session_id),))

    def sessions_of(self, username: str) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM sessions WHERE username = ? AND expires > ?",
            (username, self._clock()),
        ).fetchone()
        return int(row[0])

    # Failed logins

    def _who(self, username: str) -> str:
        """How a name typed at a login is kept: a keyed hash of it."""
        return hmac.new(self._failure_key, username.encode(), hashlib.sha256).hexdigest()

    def failures(self, username: str, client: str) -> tuple[int, float]:
        """How many logins failed in a row for this account from this client, and the last."""
        row = self.db.execute(
            "SELECT count, last FROM failed_logins WHERE who = ? AND client = ?",
            (self._who(username), client),
        ).fetchone()
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))

    def failed(self, username: str, client: str, forget_after: float) -> None:
        """Count a failure; a count quiet for `forget_after` seconds starts over, and is
        forgotten then."""
        now = self._clock()
        with self.transaction() as db:
            db.execute("DELETE FROM failed_logins WHERE last < ?", (now - forget_after,))
            db.execute(
                "INSERT INTO failed_logins VALUES (?, ?, 1, ?) ON CONFLICT (who, client) "
                "DO UPDATE SET count = CASE WHEN excluded.last - last > ? THEN 1 "
                "ELSE count + 1 END, last = excluded.last",
                (self._who(username), client, now, forget_after),
            )

    def succeeded(self, username: str, client: str) -> None:
        with self.transaction() as db:
            db.execute(
                "DELETE FROM failed_logins WHERE who = ? AND client = ?",
                (self._who(username), client),
            )

    def now(self) -> float:
        """The store's clock (tests set it), which times failures and sessions."""
        return self._clock()

    # Things and their owners

    def claim(self, thing: str, owner: str) -> bool:
        """Make `owner` the owner of `thing`; False if someone else owns it already."""
        with self.transaction() as db:
            row = db.execute("SELECT owner FROM things WHERE thing = ?", (thing,)).fetchone()
            if row is not None:
                return bool(row[0] == owner)
            db.execute(
                "INSERT INTO things (thing, owner, registered) VALUES (?, ?, ?)",
                (thing, owner, self._clock()),
            )
            return True

    def keep_registration(self, thing: str, registration: Registration, slot: int) -> None:
        """Keep what registering `thing` gave back and its key slot, to download again."""
        kept = json.dumps({"registration": asdict(registration), "slot": slot})
        with self.transaction() as db:
            db.execute("UPDATE things SET registration = ? WHERE thing = ?", (kept, thing))

    def registration(self, thing: str) -> tuple[Registration, int] | None:
        """What registering `thing` gave back, and its key slot."""
        row = self.db.execute(
            "SELECT registration FROM things WHERE thing = ?", (thing,)
        ).fetchone()
        if row is None or not row[0]:
            return None
        kept = json.loads(row[0])
        return Registration(**kept["registration"]), int(kept["slot"])

    def csr_received(self, username: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO csr_received VALUES (?, ?)", (username, self._clock())
            )

    def csr_received_at(self) -> dict[str, float]:
        return {
            str(u): float(t) for u, t in self.db.execute("SELECT username, at FROM csr_received")
        }

    def owner(self, thing: str) -> str | None:
        row = self.db.execute("SELECT owner FROM things WHERE thing = ?", (thing,)).fetchone()
        return None if row is None else str(row[0])

    def things_of(self, owner: str) -> list[str]:
        rows = self.db.execute("SELECT thing FROM things WHERE owner = ? ORDER BY thing", (owner,))
        return [str(r[0]) for r in rows]

    def all_things(self) -> dict[str, str]:
        """Every thing of the class and its owner."""
        return {str(t): str(o) for t, o in self.db.execute("SELECT thing, owner FROM things")}

    def registered_at(self, thing: str) -> float | None:
        """When `thing` became its owner's in this class (None: it is nobody's)."""
        row = self.db.execute("SELECT registered FROM things WHERE thing = ?", (thing,)).fetchone()
        return None if row is None else float(row[0])

    def release(self, thing: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM things WHERE thing = ?", (thing,))


def token_id(id_hash: str) -> str:
    """A token's short public id: the start of the hash it is kept as (names it, gives
    nothing away)."""
    return id_hash[:12]


def _keep_newest(
    db: sqlite3.Connection, table: Literal["sessions", "tokens"], who: str, keep: int
) -> None:
    """End `who`'s oldest rows of `table` beyond the newest `keep`."""
    db.execute(
        f"DELETE FROM {table} WHERE username = ? AND id_hash NOT IN "  # table: one of two literals
        f"(SELECT id_hash FROM {table} WHERE username = ? ORDER BY created DESC, rowid DESC "
        "LIMIT ?)",
        (who, who, keep),
    )


def open_store(folder: Path) -> ClassStore:
    """The class store in `folder`, or ClassError saying to run `kit class init`."""
    path = folder / "class.db"
    if not path.exists():
        raise ClassError(f"There is no class in {folder} yet. Create it with `kit class init`.")
    return ClassStore(path)
