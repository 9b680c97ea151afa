"""A student's computer in class mode: ClassCloud over the class server's API (HTTPS with the
class's own certificate, pinned at the first login), the telemetry layer reading the class's
stream, the login form, and `kit use --cloud class`."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from class_server import log_in_from_a_terminal
from class_site import PASSWORDS, Site, cloud, https_site, listening, own_device, publish
from helpers import csr_pem, wait_until

from kit import certs, settings, telemetry
from kit.class_login import ClassLogin
from kit.classroom import web_certificate
from kit.cloud import class_cloud, open_cloud
from kit.cloud.class_cloud import ClassCloud, ClassLink
from kit.cloud.local import LocalCloud
from kit.errors import CloudError
from kit.places import kit_home

__all__ = ["cloud", "https_site"]  # fixtures


def fingerprint(site: Site) -> str:
    return class_cloud.fingerprint_of(class_cloud.served_certificate(site.url))


def everything_kept() -> bytes:
    return b"".join(p.read_bytes() for p in kit_home().rglob("*") if p.is_file())


def test_logging_in_pins_the_certificate_and_keeps_only_a_token(https_site: Site) -> None:
    with pytest.raises(CloudError, match="not the one you confirmed"):
        class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], "AA:BB:CC")
    assert ClassLink.load() is None
    link = class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    assert link.username == "ada" and link.token
    for name in (class_cloud.LINK_FILE, class_cloud.CERTIFICATE_FILE):
        assert stat.S_IMODE((kit_home() / name).stat().st_mode) == 0o600
    assert PASSWORDS["ada"].encode() not in everything_kept()
    with pytest.raises(CloudError, match="do not match"):
        class_cloud.log_in(https_site.url, "ada", "wrong", fingerprint(https_site))


def test_the_class_cloud_registers_watches_and_commands_ones_own_devices(
    https_site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    settings.save(settings.Settings(cloud="class"))
    mine = open_cloud("class")
    assert isinstance(mine, ClassCloud) and mine.status().reachable
    registration = mine.register(certs.load_csr(csr_pem("cc_paper")))
    assert registration.cloud == "class" and mine.things() == ["cc_paper"]
    mine.unregister("cc_paper")
    assert mine.things() == []

    board = listening(own_device(https_site, cloud, tmp_path, "cc_board", "ada"), "cc_board")
    publish(board, "cc_board", 61.0)
    wait_until(lambda: mine.history("cc_board"), what="the recorded reading")
    assert json.loads(mine.history("cc_board")[-1].payload)["temperature"] == 61.0
    assert mine.presence("cc_board").connected is True
    # The telemetry layer, unchanged for the notebooks, reads the class's stream.
    with telemetry.Telemetry(mine.observer()) as watch:
        publish(board, "cc_board", 62.5)
        wait_until(lambda: watch.readings("cc_board"), what="a live reading")
        assert watch.readings("cc_board")[-1].temperature == 62.5
        watch.led("cc_board", 55)
        assert board.wait_for(1) == [("things/cc_board/led", b"55")]
    board.close()


def test_a_server_with_another_certificate_is_refused_with_an_explanation(
    https_site: Site, tmp_path: Path
) -> None:
    class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    # The pinned certificate is not the one served any more (another computer, or a new one).
    other = web_certificate.ensure(tmp_path / "other", ["localhost"])
    ClassLink.certificate_file().write_text(other.certificate.read_text())
    with pytest.raises(CloudError, match="no longer shows the certificate you confirmed"):
        ClassCloud().things()


def test_without_a_login_the_class_cloud_says_how_to_log_in() -> None:
    with pytest.raises(CloudError, match=r"course\.use\(cloud='class'"):
        ClassCloud()


def test_the_login_form_logs_in_and_keeps_no_password(https_site: Site) -> None:
    form = ClassLogin(https_site.url, "ada")
    assert fingerprint(https_site) in form.children[0].value
    form.password.value = "not-her-password"
    form.button.click()
    assert "do not match" in form.message.value and form.password.value == ""
    form.password.value = PASSWORDS["ada"]
    form.button.click()
    assert "Logged in as ada" in form.message.value
    assert form.password.value == "" and settings.load().cloud == "class"
    link = ClassLink.load()
    shown = repr(form) + form.message.value + json.dumps(form.get_state(), default=str)
    assert link.token not in shown and PASSWORDS["ada"] not in shown


def test_kit_use_logs_in_from_a_terminal(https_site: Site) -> None:
    done = log_in_from_a_terminal(
        https_site.url, "bob", fingerprint(https_site).lower(), PASSWORDS["bob"]
    )
    assert done.returncode == 0, done.stderr
    assert "Logged in to" in done.stdout and "class server" in done.stdout
    assert ClassLink.load().username == "bob"
    assert PASSWORDS["bob"] not in done.stdout + done.stderr
    assert ClassLink.load().token not in done.stdout + done.stderr


def test_the_token_is_in_no_repr(https_site: Site) -> None:
    link = class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    assert link.token not in repr(link)
    assert link.token not in repr(ClassCloud().observer())


def test_history_asks_the_server_for_the_last_reading_not_the_last_message(
    https_site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    board = own_device(https_site, cloud, tmp_path, "cc_last", "ada")
    publish(board, "cc_last", 66.0)
    board.client.publish("things/cc_last/led/state", b"20", qos=1).wait_for_publish(5)
    mine = ClassCloud()
    wait_until(lambda: mine.history("cc_last", topic_suffix="/led/state"), what="the LED state")
    [last] = mine.history("cc_last", latest=1, topic_suffix="/environment")
    assert json.loads(last.payload)["temperature"] == 66.0
    board.close()


def test_a_revoked_login_says_to_log_in_again(https_site: Site) -> None:
    class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    observer = ClassCloud().observer()
    https_site.store.revoke_tokens("ada")
    with pytest.raises(telemetry.TelemetryError, match=r"log in|course\.use"):
        telemetry.Telemetry(observer).start(timeout=3)


def test_the_kit_command_follows_the_course_to_the_class(https_site: Site) -> None:
    import os

    env = {**os.environ, "KIT_HOME": str(kit_home())}
    things = [sys.executable, "-m", "kit.cli", "things"]
    settings.save(settings.Settings(cloud="class"))
    before = subprocess.run(things, env=env, capture_output=True, text=True)
    assert before.returncode == 1 and "not logged in to a class yet" in before.stderr
    class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    ClassCloud().register(certs.load_csr(csr_pem("cc_listed")))
    listed = subprocess.run(things, env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.split() == ["cc_listed"]


def test_a_name_held_with_another_key_is_a_thing_taken_error(https_site: Site) -> None:
    # The same student brings a new key for a name the cloud holds: the API answers 409 and
    # ClassCloud raises what the other clouds raise, so the course gives the same advice.
    from kit.errors import ThingTakenError

    class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    mine = ClassCloud()
    mine.register(certs.load_csr(csr_pem("cc_twice")))
    with pytest.raises(ThingTakenError, match="already registered with another key"):
        mine.register(certs.load_csr(csr_pem("cc_twice")))  # a new key each time


def test_a_replaced_registration_says_the_old_config_h_is_stale(
    https_site: Site, cloud: LocalCloud, tmp_path: Path, monkeypatch, capsys
) -> None:
    # The student registered, wrote config.h, then the board made a new key: the config.h on
    # disk and the one downloaded from the class site both hold a certificate that no longer
    # works, and the course says so and where the new one is.
    from kit import course

    class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    settings.save(settings.Settings(board="/dev/ttyACM0", cloud="class"))  # a real board
    monkeypatch.setenv("KIT_CONFIG_H", str(tmp_path / "config.h"))
    keep_capture(csr_pem("cc_stale"))
    first = course.register()
    course.configure(course.wifi_form("Classroom"))  # no flashing: a real board's config.h
    pinned = class_cloud.pinned(str(kit_home() / class_cloud.CERTIFICATE_FILE))
    ada = https_site.browser("ada", pinned)
    downloaded = ada.get("/devices/cc_stale/config.h").text
    assert certs.load_certificate(first.certificate_pem).pem.splitlines()[1] in downloaded
    capsys.readouterr()

    keep_capture(csr_pem("cc_stale"))  # the board's new key, the same name
    second = course.register(replace=True)
    said = capsys.readouterr().out
    assert "The old certificate of cc_stale no longer works" in said
    assert f"such as {tmp_path / 'config.h'}" in said and "Run notebook 03 again" in said
    assert f"My devices on the class site ({https_site.url}/devices)" in said
    offered = ada.get("/devices/cc_stale/config.h").text  # what the page offers now
    ada.close()
    assert certs.load_certificate(second.certificate_pem).pem.splitlines()[1] in offered


def keep_capture(pem: str) -> None:
    """A CSR kept as notebook 01 keeps it (slot 0 of a board on /dev/ttyACM0)."""
    folder = kit_home() / "course"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "csr.pem").write_text(pem)
    facts = {"slot": 0, "board": "/dev/ttyACM0", "chip_serial": ""}
    (folder / "capture.json").write_text(json.dumps(facts))


@pytest.mark.timeout(120)
def test_04_without_03_in_class_mode_says_what_the_virtual_board_lacks(
    https_site: Site, cloud: LocalCloud
) -> None:
    # Registered through the class, but notebook 03 never ran: the virtual board still runs
    # the CSR sketch. 04 says so at once, and gives no real board's advice.
    from kit import course
    from kit.sim import board as vboard

    class_cloud.log_in(https_site.url, "ada", PASSWORDS["ada"], fingerprint(https_site))
    settings.save(settings.Settings(cloud="class"))  # and the virtual board
    try:
        course.start()
        course.capture_csr()
        course.register()
        view = course.dashboard()
        try:
            started = time.monotonic()
            said = course.wait_for_readings(view, 3)
        finally:
            view.stop()
    finally:
        vboard.stop(vboard.DEFAULT_BOARD)
    assert "still runs the CSR sketch" in said and "notebook 03" in said, said
    assert "Serial Monitor" not in said and time.monotonic() - started < 10
