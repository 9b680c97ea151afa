"""The class server's accounts: the store, passwords and their backoff, the roster and its
handout, and the site's own web certificate."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from kit.classroom import passwords, roster, web_certificate
from kit.classroom.store import Account, ClassStore
from kit.errors import ClassError, RosterError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path):
    clock = Clock()
    opened = ClassStore(tmp_path / "class" / "class.db", clock=clock)
    opened.clock = clock  # type: ignore[attr-defined]
    yield opened
    opened.close()


def test_passwords_are_stored_only_hashed_and_checked(store: ClassStore) -> None:
    password = passwords.generate()
    assert len(password) == 14 and not set(password) & set("0O1lI")
    store.add_account(Account("ada", "Ada", "student"), passwords.hash_password(password))
    assert password not in store.path.read_bytes().decode("latin-1")
    assert passwords.check_login(store, "ada", password, "10.0.0.5")
    assert not passwords.check_login(store, "ada", password + "x", "10.0.0.5")
    assert not passwords.check_login(store, "nobody", password, "10.0.0.5")
    with pytest.raises(ClassError, match="already an account called 'ada'"):
        store.add_account(Account("ada", "Another Ada", "student"), "x")


def test_failures_slow_down_per_account_and_client_never_lock_out(store: ClassStore) -> None:
    store.add_account(Account("ada", "Ada", "student"), passwords.hash_password("right"))
    now = store.clock.now  # type: ignore[attr-defined]
    for _ in range(passwords.FREE_FAILURES):
        assert passwords.wait_before_next_try(store, "ada", "10.0.0.66", now) == 0
        passwords.check_login(store, "ada", "wrong", "10.0.0.66")
    assert passwords.wait_before_next_try(store, "ada", "10.0.0.66", now) == 1.0
    for _ in range(20):
        passwords.check_login(store, "ada", "wrong", "10.0.0.66")
    assert passwords.wait_before_next_try(store, "ada", "10.0.0.66", now) == passwords.MAX_WAIT
    # Ada on her own laptop is not slowed by someone guessing from another one.
    assert passwords.wait_before_next_try(store, "ada", "10.0.0.5", now) == 0
    assert passwords.check_login(store, "ada", "right", "10.0.0.5")
    # And the waiting ends: no lock-out.
    assert passwords.wait_before_next_try(store, "ada", "10.0.0.66", now + 31) == 0


def test_sessions_are_kept_hashed_expire_and_end_with_a_new_password(store: ClassStore) -> None:
    store.add_account(Account("ada", "Ada", "student"), passwords.hash_password("right"))
    session = store.start_session("ada", "the-secret-session-id", "csrf-token")
    assert store.session("the-secret-session-id") == session
    assert b"the-secret-session-id" not in store.path.read_bytes()
    assert store.session("another-id") is None
    store.clock.now += 13 * 3600  # type: ignore[attr-defined]
    assert store.session("the-secret-session-id") is None  # expired
    store.start_session("ada", "second", "c2")
    store.set_password_hash("ada", passwords.hash_password("new"))
    assert store.session("second") is None and store.sessions_of("ada") == 0


def test_removing_an_account_ends_its_sessions_and_gives_back_its_things(
    store: ClassStore,
) -> None:
    store.add_account(Account("ada", "Ada", "student"), "h")
    store.add_account(Account("bob", "Bob", "student"), "h")
    assert store.claim("dev_a", "ada") and not store.claim("dev_a", "bob")
    assert store.claim("dev_a", "ada")  # the owner again: fine
    store.start_session("ada", "sid", "c")
    assert store.remove_account("ada") == ["dev_a"]
    assert store.session("sid") is None and store.owner("dev_a") is None
    with pytest.raises(ClassError, match="no account called 'ada'"):
        store.remove_account("ada")


def test_the_store_is_private(store: ClassStore) -> None:
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("content", "separator"),
    [("\ufeffname,username\r\n", ","), ("name;username\n", ";")],
    ids=["utf8-bom-comma", "semicolon"],
)
def test_a_roster_from_a_spreadsheet(tmp_path: Path, content: str, separator: str) -> None:
    rows = ["Ada Lovelace", "Ada Lovelace", "José Núñez", "Grace Hopper"]
    text = (
        content
        + "".join(
            f"{name}{separator}{'ghopper' if name == 'Grace Hopper' else ''}\n" for name in rows
        )
        + f"{separator}\n"
    )
    path = tmp_path / "roster.csv"
    path.write_text(text, encoding="utf-8")
    read = roster.read(path)
    assert read == [(n, "ghopper" if n == "Grace Hopper" else "") for n in rows]
    with ClassStore(tmp_path / "c" / "class.db") as store:
        cards = roster.add(store, read)
    assert [c.username for c in cards] == ["ada.lovelace", "ada.lovelace2", "jose.nunez", "ghopper"]
    assert len({c.password for c in cards}) == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("who\nAda\n", "needs a 'name' column"),
        ("name,username\nAda,Ada Lovelace!\n", "Line 2 .* may use only"),
        ("name\n" + "x" * 101 + "\n", "Line 2 .* 1-100 printable"),
        ("name\nA\x1bda\n", "Line 2 .* printable"),
    ],
    ids=["no-name-column", "bad-username", "long-name", "escape-in-name"],
)
def test_a_roster_that_cannot_be_used_names_its_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "roster.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RosterError, match=message):
        roster.read(path)


def test_a_roster_in_another_encoding_says_how_to_save_it(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_bytes("name\nJosé\n".encode("latin-1"))
    with pytest.raises(RosterError, match="CSV UTF-8"):
        roster.read(path)


def test_the_handout_is_private_and_shows_names_inert(tmp_path: Path) -> None:
    cards = [roster.Card("<script>alert(1)</script>", "eve", "abcd-efgh-jkmn")]
    path = roster.handout(cards, "https://class.local:8443/", "AA:BB", tmp_path / "handout.html")
    page = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "abcd-efgh-jkmn" in page and "AA:BB" in page and "https://class.local:8443/" in page


def test_the_web_certificate_is_no_ca_and_names_the_class_hosts(tmp_path: Path) -> None:
    made = web_certificate.ensure(tmp_path, ["class.local", "localhost", "127.0.0.1"])
    certificate = x509.load_pem_x509_certificate(made.certificate.read_bytes())
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "class.local" in names.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(made.key.stat().st_mode) == 0o600
    # The fingerprint is what openssl (and a browser) shows.
    shown = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(made.certificate)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown.strip().endswith(made.fingerprint)
    assert web_certificate.ensure(tmp_path, ["other"]).fingerprint == made.fingerprint  # kept


def test_a_known_and_an_unknown_name_answer_alike(store: ClassStore) -> None:
    # The backoff must not tell which usernames exist.
    store.add_account(Account("ada", "Ada", "student"), passwords.hash_password("right"))
    now = store.clock.now  # type: ignore[attr-defined]
    answers = {}
    for name in ("ada", "nosuchuser"):
        seen = []
        for _ in range(5):
            seen.append(passwords.wait_before_next_try(store, name, "10.0.0.7", now) > 0)
            passwords.check_login(store, name, "wrong", "10.0.0.7")
        answers[name] = seen
    assert answers["ada"] == answers["nosuchuser"] == [False, False, False, True, True]


def test_a_flood_of_made_up_names_from_one_client_slows_that_client(store: ClassStore) -> None:
    now = store.clock.now  # type: ignore[attr-defined]
    for number in range(passwords.CLIENT_FREE_FAILURES):
        assert passwords.wait_before_next_try(store, f"ghost{number}", "10.0.0.66", now) == 0
        passwords.check_login(store, f"ghost{number}", "x", "10.0.0.66")
    assert passwords.wait_before_next_try(store, "ghost-next", "10.0.0.66", now) > 0
    assert passwords.wait_before_next_try(store, "ghost-next", "10.0.0.5", now) == 0  # others
    later = now + passwords.CLIENT_FORGETS_AFTER + 1
    assert passwords.wait_before_next_try(store, "ghost-next", "10.0.0.66", later) == 0


def test_many_wrong_tries_at_once_all_count(store: ClassStore) -> None:
    # Each try counts before its hash is checked: twelve at once cannot all pass the backoff.
    import threading

    store.add_account(Account("bob", "Bob", "student"), passwords.hash_password("right"))
    threads = [
        threading.Thread(target=passwords.check_login, args=(store, "bob", "wrong", "10.0.0.9"))
        for _ in range(12)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.failures("bob", "10.0.0.9")[0] == 12
