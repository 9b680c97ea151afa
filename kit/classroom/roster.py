"""The class roster: a CSV of names in, accounts and a printable handout out.

The CSV has a `name` column and an optional `username` column, in UTF-8 (with or without the
BOM spreadsheets write), separated by `,` or `;`. Usernames are made from names when not given
(ada.lovelace, then ada.lovelace2 ...). Each student gets a generated password, shown only on
the handout (one card per student, file mode 0600) and stored only hashed.
"""

from __future__ import annotations

import csv
import html
import io
import re
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kit.classroom import passwords
from kit.classroom.store import Account, ClassStore
from kit.errors import RosterError
from kit.places import write_private
from kit.printable import printable

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
MAX_ROSTER_BYTES = 1024 * 1024
MAX_NAME = 100


@dataclass(frozen=True)
class Card:
    """What one student's handout card says."""

    name: str
    username: str
    password: str


def read(path: Path) -> list[tuple[str, str]]:
    """The roster's (name, username) rows; username is "" when the file gives none."""
    try:
        data = path.read_bytes()[: MAX_ROSTER_BYTES + 1]
    except OSError as error:
        raise RosterError(f"Cannot read {path}: {error.strerror}.") from None
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterError(f"{path} is over 1 MB: a roster is one line per student.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RosterError(
            f"{path} is not UTF-8 text. Save it from the spreadsheet as 'CSV UTF-8'."
        ) from None
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if "name" not in header:
        raise RosterError(f"{path} needs a 'name' column in its first line (and maybe 'username').")
    at_name = header.index("name")
    at_user = header.index("username") if "username" in header else None
    found = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines at the end of a spreadsheet export
        name = row[at_name].strip() if at_name < len(row) else ""
        user = row[at_user].strip().lower() if at_user is not None and at_user < len(row) else ""
        if not name or len(name) > MAX_NAME or not name.isprintable():
            raise RosterError(
                f"Line {number} of {path}: the name must be 1-{MAX_NAME} printable characters."
            )
        if user and not USERNAME.fullmatch(user):
            raise RosterError(
                f"Line {number} of {path}: the username '{printable(user)}' may use only a-z, "
                "0-9, '.', '_' and '-' (up to 32, starting with a letter or digit)."
            )
        found.append((name, user))
    return found


def username_for(name: str, taken: set[str]) -> str:
    """A free username made from a name: ascii letters and digits, words joined by '.'."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", plain)
    base = ".".join(words)[:28].strip(".") or "student"
    candidate, number = base, 2
    while candidate in taken:
        candidate, number = f"{base}{number}", number + 1
    return candidate


def add(store: ClassStore, rows: list[tuple[str, str]]) -> list[Card]:
    """Create an account for each row, all or none; the cards carry the passwords (shown
    nowhere else)."""
    existing = {account.username for account in store.accounts()}
    wanted = Counter(user for _, user in rows if user)
    for user, times in wanted.items():
        if user in existing or times > 1:
            raise RosterError(
                f"The username '{user}' is taken already (or twice in the file): choose another. "
                "Nobody was added."
            )
    taken = existing | set(wanted)  # made-up names keep clear of the ones the file asks for
    cards = []
    for name, user in rows:
        username = user or username_for(name, taken)
        taken.add(username)
        cards.append(Card(name, username, passwords.generate()))
    # argon2 lets go of the interpreter while it hashes: a room's passwords, a few at a time.
    with ThreadPoolExecutor(max_workers=passwords.HASHING_AT_ONCE) as pool:
        hashes = list(pool.map(passwords.hash_password, (card.password for card in cards)))
    store.add_accounts(
        [
            (Account(card.username, card.name, "student"), hashed)
            for card, hashed in zip(cards, hashes, strict=True)
        ]
    )
    return cards


def handout(cards: list[Card], address: str, fingerprint: str, path: Path) -> Path:
    """Write the printable handout (0600): one card per student."""

    def e(text: str) -> str:
        return html.escape(text, quote=True)

    body = "".join(
        f"<section class='card'><h2>{e(card.name)}</h2>"
        f"<p>Open <b>{e(address)}</b></p>"
        f"<p>Username <code>{e(card.username)}</code><br>"
        f"Password <code>{e(card.password)}</code></p>"
        f"<p class='small'>The browser warns once about the certificate: go on only if it "
        f"shows this SHA-256 fingerprint:<br><code>{e(fingerprint)}</code></p></section>"
        for card in cards
    )
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Class handout</title>"
        "<style>body{font-family:sans-serif}.card{border:1px dashed #555;padding:8px 14px;"
        "margin:8px;width:20em;display:inline-block;vertical-align:top;break-inside:avoid}"
        "code{font-size:1.1em}.small{font-size:.8em;overflow-wrap:anywhere}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    return write_private(path, page)
