"""The notebooks' JSON API on the class server: tokens, and a student's own devices only.

Served by uvicorn in a thread with its live feed on a real local cloud (tests/class_site.py)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from class_site import PASSWORDS, Site, Stream, cloud, listening, own_device, publish, site
from helpers import csr_pem, wait_until

from kit.classroom import passwords
from kit.cloud.local import LocalCloud

__all__ = ["cloud", "site"]  # fixtures


def token_for(site: Site, username: str) -> str:
    answer = httpx.post(
        f"{site.url}/api/token", json={"username": username, "password": PASSWORDS[username]}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def notebook(site: Site, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{site.url}/api", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_a_notebook_registers_lists_watches_and_removes_its_device(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    ada = notebook(site, token_for(site, "ada"))
    made = ada.post("/things", json={"csr": csr_pem("api_ada"), "slot": 1})
    assert made.status_code == 201 and made.json()["thing"] == "api_ada", made.text
    assert "BEGIN CERTIFICATE" in made.json()["certificate_pem"]
    assert site.store.registration("api_ada")[1] == 1
    assert [t["thing"] for t in ada.get("/things").json()] == ["api_ada"]
    bad = ada.post("/things", json={"csr": "<script>x</script>"})
    assert bad.status_code == 400 and "CSR" in bad.json()["detail"]
    assert ada.delete("/things/api_ada").status_code == 204
    assert ada.get("/things").json() == [] and "api_ada" not in cloud.things()


def test_history_presence_stream_and_led_of_ones_own_device(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    board = listening(own_device(site, cloud, tmp_path, "api_live", "ada"), "api_live")
    ada = notebook(site, token_for(site, "ada"))
    assert ada.get("/things/api_live/presence").json()["connected"] is True
    stream = Stream(ada, f"/things/api_live/events?after={site.feed.last_id}")
    publish(board, "api_live", 65.5)
    assert stream.wait_for(1, "reading")[0]["temperature"] == 65.5
    wait_until(lambda: ada.get("/things/api_live/history").json(), what="the recorder")
    recorded = ada.get("/things/api_live/history").json()
    assert json.loads(base64.b64decode(recorded[-1]["payload"]))["temperature"] == 65.5
    assert ada.post("/things/api_live/led", json={"value": 30}).status_code == 202
    assert ada.post("/things/api_live/led", json={"value": 101}).status_code == 422
    assert board.wait_for(1) == [("things/api_live/led", b"30")]
    stream.close()
    board.close()


def test_a_token_for_one_student_reaches_nothing_of_another(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    board = listening(own_device(site, cloud, tmp_path, "api_adas", "ada"), "api_adas")
    bob = notebook(site, token_for(site, "bob"))
    assert bob.get("/things").json() == []
    for method, path, body in [
        ("GET", "/things/api_adas/presence", None),
        ("GET", "/things/api_adas/history", None),
        ("GET", "/things/api_adas/events", None),
        ("POST", "/things/api_adas/led", {"value": 0}),
        ("DELETE", "/things/api_adas", None),
    ]:
        answer = bob.request(method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
    # Bob cannot take Ada's name either, whatever key he brings.
    taken = bob.post("/things", json={"csr": csr_pem("api_adas")})
    assert taken.status_code == 400 and "taken by another student" in taken.json()["detail"]
    assert board.wait_for(1, timeout=0.5) == [] and "api_adas" in cloud.things()
    board.close()


def test_tokens_expire_are_revoked_and_end_with_a_new_password(site: Site) -> None:
    ada_token = token_for(site, "ada")
    ada = notebook(site, ada_token)
    assert ada.get("/things").status_code == 200
    assert site.store.revoke_tokens("ada") == 1
    refused = ada.get("/things")
    assert refused.status_code == 401 and "course.use" in refused.json()["detail"]
    ada = notebook(site, token_for(site, "ada"))
    site.store.set_password_hash("ada", passwords.hash_password("a-new-one"))
    assert ada.get("/things").status_code == 401
    # The store keeps a hash of the token, never the token.
    token = token_for(site, "bob")
    kept = b"".join(f.read_bytes() for f in site.store.path.parent.glob("class.db*"))
    assert token.encode() not in kept
    for header in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": f"Basic {token}"}):
        assert httpx.get(f"{site.url}/api/things", headers=header).status_code in (401, 403)


def test_an_expired_token_is_refused(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.classroom import store as class_store

    monkeypatch.setattr(class_store, "TOKEN_SECONDS", 1)
    bob = notebook(site, token_for(site, "bob"))
    assert bob.get("/things").status_code == 200
    time.sleep(1.2)
    assert bob.get("/things").status_code == 401


def test_wrong_passwords_for_a_token_slow_down_as_logins_do(site: Site) -> None:
    for _ in range(passwords.FREE_FAILURES):
        wrong = httpx.post(f"{site.url}/api/token", json={"username": "bob", "password": "x"})
        assert wrong.status_code == 401
    waiting = httpx.post(
        f"{site.url}/api/token", json={"username": "bob", "password": PASSWORDS["bob"]}
    )
    assert waiting.status_code == 429 and "wait" in waiting.json()["detail"]


def test_the_instructor_ends_a_students_notebook_logins(site: Site, tmp_path: Path) -> None:
    # A lost laptop: `kit class roster revoke NAME` ends the tokens and browser sessions.
    ada = notebook(site, token_for(site, "ada"))
    browser = site.browser("ada")
    assert ada.get("/things").status_code == 200 and browser.get("/devices").status_code == 200
    folder = str(site.store.path.parent)
    done = subprocess.run(
        [sys.executable, "-m", "kit.cli", "class", "--folder", folder, "roster", "revoke", "ada"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "Ended 1 notebook login(s)" in done.stdout
    assert ada.get("/things").status_code == 401
    assert browser.get("/devices").status_code == 303  # to the login page
    assert token_for(site, "ada")  # the password still works


def test_a_device_passed_on_shows_its_new_owner_nothing_of_the_old(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    # A board handed to another student keeps its name (the chip's serial number).
    board = own_device(site, cloud, tmp_path, "api_passed", "ada")
    publish(board, "api_passed", 11.0)
    wait_until(lambda: site.feed.recent("api_passed", 5), what="Ada's reading")
    board.close()
    ada = notebook(site, token_for(site, "ada"))
    assert ada.delete("/things/api_passed").status_code == 204
    time.sleep(0.05)  # Bob's registration comes after Ada's last message
    bob = notebook(site, token_for(site, "bob"))
    assert bob.post("/things", json={"csr": csr_pem("api_passed")}).status_code == 201
    stream = Stream(bob, f"/things/api_passed/events?after={site.feed.first_id}")
    time.sleep(0.5)
    assert [e for e in stream.events if "temperature" in e] == []
    seen = bob.get("/things/api_passed/presence").json()
    assert seen["last_message"] is None and seen["connected"] is None
    assert bob.get("/things/api_passed/history").json() == []
    stream.close()


def test_a_revoked_token_ends_the_stream_it_opened(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    board = own_device(site, cloud, tmp_path, "api_cut", "bob")
    bob = notebook(site, token_for(site, "bob"))
    stream = Stream(bob, "/things/api_cut/events")
    site.store.revoke_tokens("bob")  # a lost laptop
    time.sleep(1.1)
    publish(board, "api_cut", 30.0)
    wait_until(stream.closed.is_set, what="the stream to end")
    assert [e for e in stream.events if e.get("temperature") == 30.0] == []
    board.close()


def test_history_carries_readings_not_whatever_a_device_sends(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    board = own_device(site, cloud, tmp_path, "api_big", "ada")
    huge = b'{"temperature": 70, "humidity": 40, "pad": "' + b"x" * 100_000 + b'"}'
    board.client.publish("things/api_big/environment", huge, qos=1).wait_for_publish(5)
    publish(board, "api_big", 71.0)
    ada = notebook(site, token_for(site, "ada"))
    wait_until(lambda: ada.get("/things/api_big/history").json(), what="the recorder")
    sizes = [len(base64.b64decode(m["payload"])) for m in ada.get("/things/api_big/history").json()]
    assert sizes and max(sizes) <= 2048
    board.close()


def test_characters_json_cannot_carry_back_are_refused_and_never_echoed(site: Site) -> None:
    body = '{"username": "ada", "password": "secret-\\ud800"}'
    answer = httpx.post(
        f"{site.url}/api/token", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code in (401, 422) and "secret" not in answer.text
    ada = notebook(site, token_for(site, "ada"))
    led = ada.post(
        "/things/x/led",
        content='{"value": "\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert led.status_code in (404, 422) and "ud800" not in led.text


def test_the_instructors_token_follows_a_students_device(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    board = own_device(site, cloud, tmp_path, "api_watched", "ada")
    teacher = notebook(site, token_for(site, "teacher"))
    stream = Stream(teacher, "/things/api_watched/events")
    publish(board, "api_watched", 44.0)
    assert stream.wait_for(1, "reading")[0]["temperature"] == 44.0
    assert not stream.closed.is_set()
    stream.close()
    board.close()
