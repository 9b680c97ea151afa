"""The class server's accounts: the store, passwords and their backoff, the roster and its
handout, and the site's own web certificate."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from kit.classroom import passwords, roster, web_certificate
from kit.classroom.store import Account, ClassStore, session_key
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


def stored_bytes(store: ClassStore) -> bytes:
    """Everything SQLite keeps of the store: the database and its -wal and -shm files."""
    files = [store.path, *store.path.parent.glob(store.path.name + "-*")]
    return b"".join(f.read_bytes() for f in files)


def test_passwords_are_stored_only_hashed_and_checked(store: ClassStore) -> None:
    password = passwords.generate()
    assert len(password) == 14 and not set(password) & set("0O1lI")
    store.add_account(Account("ada", "Ada", "student"), passwords.hash_password(password))
    kept = stored_bytes(store)
    assert b"$argon2id$" in kept  # the hash is in what was read: the check below can fail
    assert password.encode() not in kept
    assert passwords.check_login(store, "ada", password, "10.0.0.5").right
    assert not passwords.check_login(store, "ada", password + "x", "10.0.0.5").right
    assert not passwords.check_login(store, "nobody", password, "10.0.0.5").right
    with pytest.raises(ClassError, match="taken already"):
        store.add_account(Account("ada", "Another Ada", "student"), "x")


def test_failures_slow_down_per_account_and_client_never_lock_out(store: ClassStore) -> None:
    store.add_account(Account("ada", "Ada", "student"), passwords.hash_password("right"))
    clock = store.clock  # type: ignore[attr-defined]
    for _ in range(passwords.FREE_FAILURES):
        assert passwords.check_login(store, "ada", "wrong", "10.0.0.66") == passwords.Login(False)
    # The fourth try waits a second, and is not even checked: the right password too.
    assert passwords.check_login(store, "ada", "right", "10.0.0.66").wait == 1.0
    for _ in range(12):
        clock.now += passwords.MAX_WAIT
        passwords.check_login(store, "ada", "wrong", "10.0.0.66")
    assert passwords.wait_before_next_try(store, "ada", "10.0.0.66") == passwords.MAX_WAIT
    # Ada on her own laptop is not slowed by someone guessing from another one.
    assert passwords.wait_before_next_try(store, "ada", "10.0.0.5") == 0
    assert passwords.check_login(store, "ada", "right", "10.0.0.5").right
    # And the waiting ends: no lock-out.
    clock.now += passwords.MAX_WAIT + 1
    assert passwords.check_login(store, "ada", "right", "10.0.0.66").right
    # A count quiet for long enough starts over instead of growing for ever.
    for _ in range(passwords.FREE_FAILURES + 2):
        clock.now += passwords.MAX_WAIT
        passwords.check_login(store, "ada", "wrong", "10.0.0.66")
    clock.now += passwords.FORGET_AFTER + 1
    passwords.check_login(store, "ada", "wrong", "10.0.0.66")
    assert store.failures("ada", "10.0.0.66")[0] == 1


def test_sessions_are_kept_hashed_expire_and_end_with_a_new_password(store: ClassStore) -> None:
    store.add_account(Account("ada", "Ada", "student"), passwords.hash_password("right"))
    session = store.start_session("ada", "the-secret-session-id", "csrf-token", 0)
    assert store.session("the-secret-session-id") == session
    assert session_key("the-secret-session-id").encode() in stored_bytes(store)
    assert b"the-secret-session-id" not in stored_bytes(store)
    assert store.session("another-id") is None
    store.clock.now += 13 * 3600  # type: ignore[attr-defined]
    assert store.session("the-secret-session-id") is None  # expired
    store.start_session("ada", "second", "c2", 0)
    store.set_password_hash("ada", passwords.hash_password("new"))
    assert store.session("second") is None and store.sessions_of("ada") == 0


def test_removing_an_account_ends_its_sessions_and_gives_back_its_things(
    store: ClassStore,
) -> None:
    store.add_account(Account("ada", "Ada", "student"), "h")
    store.add_account(Account("bob", "Bob", "student"), "h")
    assert store.claim("dev_a", "ada") and not store.claim("dev_a", "bob")
    assert store.claim("dev_a", "ada")  # the owner again: fine
    store.start_session("ada", "sid", "c", 0)
    assert store.remove_account("ada") == ["dev_a"]
    assert store.session("sid") is None and store.owner("dev_a") is None
    with pytest.raises(ClassError, match="no account called 'ada'"):
        store.remove_account("ada")


def test_the_store_is_private(store: ClassStore) -> None:
    store.add_account(Account("ada", "Ada", "student"), "hash")  # SQLite makes its -wal file
    files = [store.path, *store.path.parent.glob("class.db-*")]
    assert len(files) == 3  # the database, its -wal and its -shm
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
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
    answers = {}
    for name in ("ada", "nosuchuser"):
        answers[name] = [
            passwords.check_login(store, name, "wrong", "10.0.0.7").wait > 0 for _ in range(5)
        ]
    assert answers["ada"] == answers["nosuchuser"] == [False, False, False, True, True]


def test_a_flood_of_made_up_names_from_one_client_slows_that_client(store: ClassStore) -> None:
    for number in range(passwords.CLIENT_FREE_FAILURES):
        assert passwords.check_login(store, f"ghost{number}", "x", "10.0.0.66").wait == 0
    assert passwords.wait_before_next_try(store, "ghost-next", "10.0.0.66") > 0
    assert passwords.wait_before_next_try(store, "ghost-next", "10.0.0.5") == 0  # others
    store.clock.now += passwords.FORGET_AFTER + 1  # type: ignore[attr-defined]
    assert passwords.wait_before_next_try(store, "ghost-next", "10.0.0.66") == 0


def test_a_room_behind_one_address_logs_in_without_waiting(store: ClassStore) -> None:
    # Right passwords from one address (a classroom behind NAT) never count against it.
    hashed, room = passwords.hash_password("pw"), passwords.CLIENT_FREE_FAILURES + 2
    for number in range(room):
        store.add_account(Account(f"s{number}", "S", "student"), hashed)
    answers = [passwords.check_login(store, f"s{n}", "pw", "10.0.0.1") for n in range(room)]
    assert all(answer.right for answer in answers)
    assert store.failures(passwords.ANY_NAME, "10.0.0.1")[0] == 0


def test_many_wrong_tries_at_once_are_held_back_like_one_after_another(
    store: ClassStore,
) -> None:
    # Deciding to wait and counting the try are one step: of twelve tries sent together,
    # only the free ones are checked at all; the rest are told to wait.
    import threading

    store.add_account(Account("bob", "Bob", "student"), passwords.hash_password("right"))
    answers: list[passwords.Login] = []

    def guess() -> None:
        answers.append(passwords.check_login(store, "bob", "wrong", "10.0.0.9"))

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    checked = [answer for answer in answers if answer.wait == 0]
    assert len(answers) == 12 and len(checked) == passwords.FREE_FAILURES


def test_a_roster_with_a_taken_username_adds_nobody(store: ClassStore) -> None:
    # The made-up name of the first row would be the name the second row asks for.
    rows = [("Ada Lovelace", ""), ("Ada Two", "ada.lovelace")]
    cards = roster.add(store, rows)
    assert [card.username for card in cards] == ["ada.lovelace2", "ada.lovelace"]
    with pytest.raises(RosterError, match=r"'ada\.lovelace' is taken already.*Nobody was added"):
        roster.add(store, [("Grace Hopper", ""), ("Someone", "ada.lovelace")])
    assert store.account("grace.hopper") is None


def test_a_web_certificate_about_to_run_out_is_made_again(tmp_path: Path) -> None:
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    made = web_certificate.ensure(tmp_path, ["class.local"])
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "class.local")])
    now = datetime.datetime.now(datetime.timezone.utc)
    old = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=400))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .sign(key, hashes.SHA256())
    )
    made.certificate.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    renewed = web_certificate.ensure(tmp_path, ["class.local"])
    assert renewed.fingerprint not in (
        made.fingerprint,
        web_certificate.fingerprint_of(old.public_bytes(serialization.Encoding.PEM)),
    )
    kept = x509.load_pem_x509_certificate(renewed.certificate.read_bytes())
    assert kept.not_valid_after_utc > now + datetime.timedelta(days=300)


def test_a_room_behind_one_address_logging_in_at_once_is_not_told_to_wait(
    store: ClassStore,
) -> None:
    # Tries in flight are not failures of the client: thirty right passwords sent together.
    import threading

    hashed, room = passwords.hash_password("pw"), passwords.CLIENT_FREE_FAILURES + 10
    for number in range(room):
        store.add_account(Account(f"r{number}", "R", "student"), hashed)
    answers: list[passwords.Login] = []

    def log_in(number: int) -> None:
        answers.append(passwords.check_login(store, f"r{number}", "pw", "10.0.0.2"))

    threads = [threading.Thread(target=log_in, args=(n,)) for n in range(room)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == room and all(answer.right for answer in answers)
