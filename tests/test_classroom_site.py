"""The class site through its HTTP interface (Starlette's test client, a real local cloud):
the student's pages, the instructor's page, and the attacks a classroom network brings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import csr_pem

from kit import config_h
from kit.classroom import passwords
from kit.classroom.site import SiteOptions, create_app
from kit.classroom.store import Account, ClassStore
from kit.cloud.local import LocalCloud

PASSWORDS = {"teacher": "teach-pass-1", "ada": "ada-pass-123", "bob": "bob-pass-456"}


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud(port=0, ws_port=0) as running:
        yield running


@pytest.fixture
def site(tmp_path: Path, cloud: LocalCloud):
    store = ClassStore(tmp_path / "class" / "class.db")
    store.add_account(
        Account("teacher", "The Teacher", "instructor"),
        passwords.hash_password(PASSWORDS["teacher"]),
    )
    for username, name in (("ada", "Ada <b>Lovelace</b>"), ("bob", "Bob <script>x()</script>")):
        store.add_account(
            Account(username, name, "student"), passwords.hash_password(PASSWORDS[username])
        )
    app = create_app(store, cloud, SiteOptions("https://testserver/", https=False))
    yield app, store
    for thing in store.all_things():
        cloud.unregister(thing)
    store.close()


def browser(app) -> TestClient:
    return TestClient(app, base_url="http://testserver", follow_redirects=False)


def log_in(client: TestClient, username: str, password: str | None = None):
    form = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
    return client.post(
        "/login",
        data={
            "username": username,
            "password": password or PASSWORDS[username],
            "login_csrf": token,
        },
    )


def csrf_of(client: TestClient, path: str = "/register") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def register(client: TestClient, csr: str, slot: str = "0"):
    return client.post("/register", data={"csrf": csrf_of(client), "csr": csr, "slot": slot})


def test_a_student_registers_a_pasted_csr_and_gets_a_ready_config_h(site) -> None:
    app, store = site
    ada = browser(app)
    assert log_in(ada, "ada").status_code == 303
    pasted = "10:14:00.000 -> Here's your CSR, enjoy!\n" + csr_pem("ada_board")
    page = register(ada, pasted, slot="2")
    assert page.status_code == 200 and "Registered <b>ada_board</b>" in page.text
    assert "BEGIN CERTIFICATE" in page.text and "YOUR-WIFI-PASSWORD" in page.text
    downloaded = ada.get("/devices/ada_board/config.h")
    assert (
        downloaded.status_code == 200 and "attachment" in downloaded.headers["content-disposition"]
    )
    parsed = config_h.parse(downloaded.text)
    assert (parsed.device_name, parsed.slot, parsed.password) == (
        "ada_board",
        2,
        "YOUR-WIFI-PASSWORD",
    )
    assert parsed.local_ca  # the local cloud's CA, for the board to trust its broker
    devices = ada.get("/devices").text
    assert "ada_board" in devices and "registered, never connected" in devices
    assert store.owner("ada_board") == "ada"

    teacher = browser(app)
    log_in(teacher, "teacher")
    overview = teacher.get("/class").text
    assert "ada_board" in overview and "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in overview
    assert "<script>x()</script>" not in overview and "Bob &lt;script&gt;" in overview


def test_a_second_student_sees_nothing_of_the_first_ones_device(site) -> None:
    app, _ = site
    ada, bob = browser(app), browser(app)
    log_in(ada, "ada")
    log_in(bob, "bob")
    register(ada, csr_pem("ada_only"))
    assert "ada_only" not in bob.get("/devices").text
    for name in ("config.h", "certificate.pem", "ca.pem"):
        assert bob.get(f"/devices/ada_only/{name}").status_code == 404
    removed = bob.post("/devices/ada_only/remove", data={"csrf": csrf_of(bob)})
    assert removed.status_code == 404 and "ada_only" in ada.get("/devices").text
    assert bob.get("/class").status_code == 403
    # The name is Ada's in this class: Bob cannot take it, whatever key he brings.
    taken = register(bob, csr_pem("ada_only"))
    assert taken.status_code == 400 and "taken by another student" in taken.text


def test_wrong_passwords_slow_down_and_never_lock_out(site) -> None:
    app, _ = site
    guesser = browser(app)
    for _ in range(passwords.FREE_FAILURES):
        wrong = log_in(guesser, "ada", "not-her-password")
        assert wrong.status_code == 401 and "do not match" in wrong.text
    slowed = log_in(guesser, "ada", PASSWORDS["ada"])  # even the right one waits now
    assert slowed.status_code == 429 and "wait" in slowed.text
    # The guesser is one address; Ada's own laptop is another (the backoff is per client).
    own_laptop = TestClient(app, follow_redirects=False, client=("10.1.1.1", 50000))
    assert log_in(own_laptop, "ada").status_code == 303


def test_the_session_id_changes_at_login_and_ends_at_logout(site) -> None:
    app, store = site
    # Bob plants his own valid session id in Ada's browser before she logs in.
    bob = browser(app)
    planted = log_in(bob, "bob").cookies.get("kit_session")
    client = browser(app)
    client.cookies.set("kit_session", planted)
    response = log_in(client, "ada")
    new_id = response.cookies.get("kit_session")
    assert new_id and new_id != planted
    assert store.session(planted).account.username == "bob"  # never upgraded to Ada
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=lax" in response.headers["set-cookie"].lower()
    client.cookies.set("kit_session", new_id)
    assert client.get("/devices").status_code == 200
    client.post("/logout", data={"csrf": csrf_of(client, "/devices")})
    assert store.session(new_id) is None
    client.cookies.set("kit_session", new_id)  # the old cookie, replayed
    assert client.get("/devices").status_code == 303


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/register", {"csr": "x"}),
        ("/logout", {}),
        ("/devices/any/remove", {}),
        ("/class/teardown", {"confirm": "remove every device"}),
    ],
)
def test_every_post_needs_the_csrf_token(site, path: str, form: dict[str, str]) -> None:
    app, _store = site
    teacher = browser(app)
    log_in(teacher, "teacher")
    for token in ("", "forged"):
        refused = teacher.post(path, data={**form, "csrf": token})
        assert refused.status_code == 403 and "out of date" in refused.text
    assert teacher.get("/class").status_code == 200  # still logged in: nothing happened


def test_the_login_form_needs_its_own_token(site) -> None:
    app, _ = site
    client = browser(app)
    refused = client.post("/login", data={"username": "ada", "password": PASSWORDS["ada"]})
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("pasted", "message"),
    [
        ("<script>alert(1)</script>", "No certificate signing request"),
        ("-----BEGIN CERTIFICATE REQUEST-----\n" + "A" * 3000 + "\n", "END line"),
        (csr_pem("bad name with spaces"), "device name"),
    ],
    ids=["script", "truncated", "bad-name"],
)
def test_a_hostile_or_broken_csr_gets_a_message_and_stays_inert(
    site, pasted: str, message: str
) -> None:
    app, _ = site
    ada = browser(app)
    log_in(ada, "ada")
    page = register(ada, pasted)
    assert page.status_code == 400 and re.search(message, page.text, re.I)
    assert "<script>alert(1)</script>" not in page.text


def test_an_oversized_request_is_refused(site) -> None:
    app, _ = site
    ada = browser(app)
    log_in(ada, "ada")
    huge = ada.post("/register", data={"csrf": csrf_of(ada), "csr": "A" * 300_000})
    assert huge.status_code == 413


def test_an_oversized_body_sent_without_a_length_is_refused_too(site) -> None:
    app, _ = site
    ada = browser(app)
    log_in(ada, "ada")
    body = f"csrf={csrf_of(ada)}&csr=".encode() + b"A" * 300_000

    def chunks():  # a generator body goes out chunked, with no Content-Length
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    huge = ada.post(
        "/register",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413 and "too much" in huge.text


def test_the_instructor_tears_the_class_down_with_confirmation(site, cloud) -> None:
    app, store = site
    ada, teacher = browser(app), browser(app)
    log_in(ada, "ada")
    log_in(teacher, "teacher")
    register(ada, csr_pem("to_go"))
    token = csrf_of(teacher, "/class")
    kept = teacher.post("/class/teardown", data={"csrf": token, "confirm": "yes"})
    assert kept.status_code == 400 and "to_go" in cloud.things()
    teacher.post("/class/teardown", data={"csrf": token, "confirm": "remove every device"})
    assert "to_go" not in cloud.things() and store.all_things() == {}


def test_students_registering_at_the_same_moment_all_succeed(site) -> None:
    # The site answers in many threads: one registration must never break another's.
    import threading

    app, store = site
    for number in range(8):
        store.add_account(
            Account(f"s{number}", f"Student {number}", "student"),
            passwords.hash_password("pw-pw-pw"),
        )
    clients = [browser(app) for _ in range(8)]
    for number, client in enumerate(clients):
        log_in(client, f"s{number}", "pw-pw-pw")
    tokens = [csrf_of(client) for client in clients]
    csrs = [csr_pem(f"same_moment_{number}") for number in range(8)]
    start, answers = threading.Barrier(8), {}

    def go(number: int) -> None:
        start.wait()
        answers[number] = (
            clients[number]
            .post("/register", data={"csrf": tokens[number], "csr": csrs[number], "slot": "0"})
            .status_code
        )

    threads = [threading.Thread(target=go, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == dict.fromkeys(range(8), 200)
    assert len(store.all_things()) == 8


def test_a_restart_loses_nothing_and_sessions_survive_it(site, cloud, tmp_path: Path) -> None:
    app, store = site
    ada = browser(app)
    log_in(ada, "ada")
    register(ada, csr_pem("kept_board"))
    session_id = ada.cookies.get("kit_session")
    # The server restarts: a new process opens the same class folder.
    reopened = ClassStore(store.path)
    again = browser(create_app(reopened, cloud, SiteOptions("https://testserver/", https=False)))
    again.cookies.set("kit_session", session_id)
    assert "kept_board" in again.get("/devices").text
    assert again.get("/devices/kept_board/config.h").status_code == 200
    reopened.close()


def test_script_in_the_slot_field_is_shown_inert(site) -> None:
    app, _ = site
    ada = browser(app)
    log_in(ada, "ada")
    page = register(ada, csr_pem("slot_board"), slot='"><script>alert(1)</script>')
    assert page.status_code == 400 and "key slot is a number from 0 to 4" in page.text
    assert "<script>alert(1)</script>" not in page.text


def test_a_token_in_any_characters_is_refused_not_a_crash(site) -> None:
    app, _ = site
    ada = browser(app)
    log_in(ada, "ada")
    for token in ("é", "\u202e", "x" * 5000):
        assert ada.post("/logout", data={"csrf": token}).status_code == 403
        visitor = browser(app)
        visitor.get("/login")  # holds a login cookie: the token itself is compared
        assert visitor.cookies.get("kit_login")
        answer = visitor.post("/login", data={"username": "ada", "login_csrf": token})
        assert answer.status_code == 403 and "out of date" in answer.text


def test_a_device_registered_outside_the_class_cannot_be_taken_over(site, cloud) -> None:
    # A CSR is no secret: whoever has a copy of one registered elsewhere gets nothing here.
    from kit import certs

    app, store = site
    outside = csr_pem("teacher_demo")
    cloud.register(certs.load_csr(outside))
    bob = browser(app)
    log_in(bob, "bob")
    refused = register(bob, outside)
    assert refused.status_code == 400 and "outside this class" in refused.text
    assert store.owner("teacher_demo") is None
    assert bob.post("/devices/teacher_demo/remove", data={"csrf": csrf_of(bob)}).status_code == 404
    assert "teacher_demo" in cloud.things()
    cloud.unregister("teacher_demo")


def test_a_student_may_have_five_devices(site) -> None:
    app, _ = site
    ada = browser(app)
    log_in(ada, "ada")
    mine = [csr_pem(f"mine_{number}") for number in range(5)]
    for csr in mine:
        assert register(ada, csr).status_code == 200
    sixth = register(ada, csr_pem("mine_5"))
    assert sixth.status_code == 400 and "5 devices registered already" in sixth.text
    assert register(ada, mine[0]).status_code == 200  # one of hers again: not a sixth


def test_pages_stay_out_of_frames_and_scripts_come_only_from_the_site(site) -> None:
    app, _ = site
    page = browser(app).get("/login")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_a_device_the_cloud_lost_can_still_be_removed(site, cloud) -> None:
    # Removed from the cloud behind the class's back (`kit unregister`, the AWS console):
    # its owner still frees the place instead of meeting an error.
    app, store = site
    ada = browser(app)
    log_in(ada, "ada")
    register(ada, csr_pem("lost_board"))
    cloud.unregister("lost_board")
    removed = ada.post("/devices/lost_board/remove", data={"csrf": csrf_of(ada)})
    assert removed.status_code == 303 and store.owner("lost_board") is None


def test_the_class_table_refreshes_for_the_instructor_only(site) -> None:
    app, _ = site
    ada, teacher = browser(app), browser(app)
    log_in(ada, "ada")
    log_in(teacher, "teacher")
    register(ada, csr_pem("table_board"))
    table = teacher.get("/class/table")
    assert table.status_code == 200 and table.text.lstrip().startswith("<table")
    assert "table_board" in table.text and "<header>" not in table.text
    assert ada.get("/class/table").status_code == 403
    assert browser(app).get("/class/table").status_code == 403
