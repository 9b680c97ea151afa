"""Credentials on the class server (issue 26, attacks 3 and 10): a login racing a new password
leaves no way in, tokens are capped and a student can end their own, and failed logins keep no
name in clear nor for longer than their window.

Served by uvicorn in a thread with its live feed on a real local cloud (tests/class_site.py)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import pytest
from class_site import PASSWORDS, Site, cloud, https_site, site

from kit.classroom import passwords, server
from kit.classroom.store import TOKENS_EACH, Account, ClassStore
from kit.cloud import class_cloud
from kit.cloud.class_cloud import ClassCloud, ClassLink
from kit.errors import CloudError

__all__ = ["cloud", "https_site", "site"]  # fixtures

LOGIN_THREADS = 4  # of each kind: notebooks asking for a token, browsers for a session


def fingerprint(site: Site) -> str:
    return class_cloud.fingerprint_of(class_cloud.served_certificate(site.url))


def laptop(site: Site, number: int) -> httpx.Client:
    """A client of the site from its own address 127.0.0.`number`."""
    scheme, _, port = site.url.split(":")
    return httpx.Client(
        base_url=f"{scheme}://127.0.0.1:{port}",
        transport=httpx.HTTPTransport(local_address=f"127.0.0.{number}", verify=False),
        timeout=30,
    )


def api_token(site: Site, username: str, password: str, number: int = 1) -> httpx.Response:
    with laptop(site, number) as client:
        return client.post("/api/token", json={"username": username, "password": password})


def browser_login(
    site: Site, username: str, password: str, number: int
) -> tuple[int, httpx.Client]:
    """A browser logging in with this password: the answer's status and the browser."""
    client = laptop(site, number)
    form = client.get("/login").text
    token = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)
    answer = client.post(
        "/login", data={"username": username, "password": password, "login_csrf": token}
    )
    return answer.status_code, client


def token_works(site: Site, token: str) -> bool:
    with laptop(site, 1) as client:
        answer = client.get("/api/things", headers={"Authorization": f"Bearer {token}"})
    return answer.status_code == 200


def session_works(client: httpx.Client) -> bool:
    return client.get("/devices").status_code == 200


def new_password_on_card(handout: Path) -> str:
    return re.search(r"Password <code>([^<]+)</code>", handout.read_text()).group(1)


def race_a_reset(site: Site, password: str, first: int) -> tuple[list[str], list, str]:
    """Notebooks and browsers, each on a laptop of its own from 127.0.0.`first` on (tries
    of one account from one address at once are held back as guesses), log in with
    `password` in a loop while the instructor gives a new one: the tokens and browsers they
    got, and the new password."""
    tokens: list[str] = []
    browsers: list[httpx.Client] = []
    refused = threading.Barrier(2 * LOGIN_THREADS + 1)

    def notebook(number: int) -> None:
        while (answer := api_token(site, "ada", password, number)).status_code in (200, 503):
            if answer.status_code == 200:
                tokens.append(answer.json()["token"])
        refused.wait()

    def browser(number: int) -> None:
        while True:
            status, client = browser_login(site, "ada", password, number)
            if status == 303:
                browsers.append(client)
                continue
            client.close()
            if status != 503:
                break
        refused.wait()

    threads = [
        threading.Thread(target=kind, args=(first + 2 * n + (kind is browser),))
        for kind in (notebook, browser)
        for n in range(LOGIN_THREADS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.5)  # logins under way, some in the middle of their hash
    handout = server.reset_password(site.store.path.parent, "ada")
    refused.wait(timeout=60)  # every login loop met the new password
    return tokens, browsers, new_password_on_card(handout)


def test_a_login_racing_a_new_password_leaves_no_way_in(site: Site) -> None:
    password = PASSWORDS["ada"]
    survivors: list[str] = []
    for round in range(3):  # each round laptops of its own: the last one's failures wait
        tokens, browsers, password = race_a_reset(site, password, 10 + 20 * round)
        survivors += [token for token in tokens if token_works(site, token)]
        survivors += [f"session {n}" for n, b in enumerate(browsers) if session_works(b)]
        print(f"{len(tokens)} tokens, {len(browsers)} sessions made; {len(survivors)} live")
        for client in browsers:
            client.close()
        assert tokens and browsers  # the old password did work until the reset
    assert survivors == []
    assert api_token(site, "ada", password).status_code == 200  # the new password works


def test_revoking_ends_the_logins_being_checked_too(site: Site) -> None:
    # A login whose password was checked before `revoke` gets nothing after it.
    answer = passwords.check_login(site.store, "bob", PASSWORDS["bob"], "10.1.2.3")
    assert answer.right and answer.credentials is not None
    server.revoke(site.store.path.parent, "bob")
    assert site.store.issue_token("bob", "late-token", answer.credentials) is None
    assert site.store.start_session("bob", "late-session", "csrf", answer.credentials) is None
    assert site.store.token_account("late-token") is None


def test_a_person_keeps_only_their_newest_tokens(site: Site) -> None:
    issued = [api_token(site, "ada", PASSWORDS["ada"]).json()["token"] for _ in range(7)]
    live = [token_works(site, token) for token in issued]
    assert live == [False] * (7 - TOKENS_EACH) + [True] * TOKENS_EACH


def test_a_student_lists_and_ends_their_own_tokens(site: Site) -> None:
    first, second, third = (
        api_token(site, "ada", PASSWORDS["ada"]).json()["token"] for _ in range(3)
    )
    bob = api_token(site, "bob", PASSWORDS["bob"]).json()["token"]
    notebook = httpx.Client(
        base_url=f"{site.url}/api", headers={"Authorization": f"Bearer {third}"}
    )
    listed = notebook.get("/tokens").json()
    assert len(listed) == 3 and [t["current"] for t in listed] == [True, False, False]
    assert all(first not in str(t) and len(t["id"]) == 12 for t in listed)
    # Ending one by its id; Bob's ids are not hers to end.
    assert notebook.delete(f"/tokens/{listed[2]['id']}").status_code == 204
    assert not token_works(site, first) and token_works(site, second)
    bobs = httpx.get(f"{site.url}/api/tokens", headers={"Authorization": f"Bearer {bob}"}).json()
    assert notebook.delete(f"/tokens/{bobs[0]['id']}").status_code == 404
    assert token_works(site, bob)
    # Logging this notebook out ends this token only.
    assert notebook.delete("/token").status_code == 204
    assert not token_works(site, third) and token_works(site, second)


def test_logging_out_of_the_browser_ends_the_notebooks_when_asked(site: Site) -> None:
    token = api_token(site, "ada", PASSWORDS["ada"]).json()["token"]
    for notebooks, still in (("", True), ("1", False)):
        browser = site.browser("ada")
        page = browser.get("/devices").text
        assert 'name="notebooks"' in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        browser.post("/logout", data={"csrf": csrf, "notebooks": notebooks})
        assert not session_works(browser)
        assert token_works(site, token) is still


def test_a_notebook_logs_out_of_the_class(https_site: Site) -> None:
    class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    token = ClassLink.load().token
    mine = ClassCloud()
    assert [login["current"] for login in mine.logins()] == [True]
    mine.log_out()
    assert ClassLink.load() is None and not token_works(https_site, token)
    # Everywhere: every computer's login of the student ends.
    elsewhere = api_token(https_site, "ada", PASSWORDS["ada"])
    https_site_token = elsewhere.json()["token"]
    class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    ClassCloud().log_out(everywhere=True)
    assert not token_works(https_site, https_site_token)
    with pytest.raises(CloudError, match="not logged in"):
        ClassCloud()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_keep_no_name_in_clear_and_forget_it_with_their_window(
    tmp_path: Path,
) -> None:
    clock = Clock()
    store = ClassStore(tmp_path / "class" / "class.db", clock=clock)
    try:
        store.add_account(Account("ada", "Ada", "student"), passwords.hash_password("right"))
        typed = "zq7k-9fwx-my-password-typed-as-a-name"
        assert not passwords.check_login(store, typed, "x", "10.0.0.5").right
        kept = b"".join(f.read_bytes() for f in store.path.parent.glob("class.db*"))
        assert typed.encode() not in kept
        assert store.failures(typed, "10.0.0.5")[0] == 1
        clock.now += passwords.FORGET_AFTER + 1
        assert not passwords.check_login(store, "ada", "wrong", "10.0.0.6").right
        rows = store.db.execute("SELECT client FROM failed_logins").fetchall()
        assert sorted(rows) == [("10.0.0.6",), ("10.0.0.6",)]  # 10.0.0.5's are gone
    finally:
        store.close()


def test_a_person_keeps_only_their_newest_browser_sessions(tmp_path: Path) -> None:
    from kit.classroom.store import SESSIONS_EACH

    clock = Clock()
    store = ClassStore(tmp_path / "class" / "class.db", clock=clock)
    try:
        store.add_account(Account("ada", "Ada", "student"), "hash")
        for n in range(SESSIONS_EACH + 2):
            clock.now += 1
            assert store.start_session("ada", f"sid{n}", "csrf", 0) is not None
        live = [store.session(f"sid{n}") is not None for n in range(SESSIONS_EACH + 2)]
        assert live == [False, False] + [True] * SESSIONS_EACH
    finally:
        store.close()
