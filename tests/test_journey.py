"""The student's wrong turns through the course's calls, on the virtual board and the local cloud
as background processes (as in JupyterLab): re-running a step is safe, starting again never undoes
a later step, skipping setup works, and a dashboard that waits says why."""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import csr_pem

from kit import certs, course, devices, diagnosis, settings, steps
from kit.cloud import service
from kit.errors import KitError, ThingTakenError
from kit.places import checkout, kit_home
from kit.sim import board as vboard


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


@pytest.fixture
def classroom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The course's settings as `kit demo` gives them, and everything stopped afterwards."""
    monkeypatch.setenv("KIT_BROKER_PORT", free_port())
    monkeypatch.setenv("KIT_BROKER_WS_PORT", free_port())
    monkeypatch.setenv("KIT_CONFIG_H", str(tmp_path / "config.h"))
    monkeypatch.setenv("KIT_PUBLISH_INTERVAL", "0.5")
    monkeypatch.setenv("KIT_WIFI_PASSWORD", "")
    try:
        yield tmp_path
    finally:
        vboard.stop(vboard.DEFAULT_BOARD)
        service.stop_service()


@pytest.mark.slow
def test_running_01_twice_then_02_keeps_the_registered_key(classroom: Path, capsys) -> None:
    course.start()
    first = course.capture_csr()
    course.register()
    again = course.capture_csr()  # the student runs 01 again
    assert again.csr.public_key_der == first.csr.public_key_der
    assert not course.register().created  # 02 again: the same registration, no dead end

    newer = course.capture_csr(new_key=True)  # asked for: a new key
    assert newer.csr.public_key_der != first.csr.public_key_der
    with pytest.raises(ThingTakenError, match=r"course\.register\(replace=True\)"):
        course.register()
    capsys.readouterr()
    replaced = course.register(replace=True)
    assert replaced.created and devices.load().certificate_pem == replaced.certificate_pem
    said = capsys.readouterr().out  # no config.h written yet: none named; no class site
    assert "no longer works" in said and "Run notebook 03 again" in said
    assert "such as" not in said and "class site" not in said


@pytest.mark.slow
def test_skipping_00_starts_the_cloud_and_writes_its_real_port(classroom: Path) -> None:
    # No course.start(): 01 starts the virtual board, 02 the cloud it registers in.
    course.capture_csr()
    registration = course.register()
    running = service.service_state()
    assert running is not None and registration.broker_port == running.port
    assert devices.load().broker_port == running.port != 8883


@pytest.mark.slow
def test_starting_again_after_03_keeps_the_aws_firmware(classroom: Path) -> None:
    course.start()
    course.capture_csr()
    course.register()
    course.configure(course.wifi_form())
    said = course.start()  # the student comes back the next day and runs 00 again
    assert "AWS firmware" in said and vboard.find().firmware == "aws"
    vboard.stop(vboard.DEFAULT_BOARD)  # the computer restarted
    assert "AWS firmware" in course.start() and vboard.find().firmware == "aws"
    view = course.dashboard()
    try:
        assert "new readings from" in course.wait_for_readings(view, 2, timeout=30)
    finally:
        view.stop()


@pytest.mark.slow
def test_a_dashboard_that_gets_nothing_says_why(classroom: Path) -> None:
    course.start()
    course.capture_csr()
    course.register()  # but notebook 03 never ran: the board still runs the CSR sketch
    view = course.dashboard()
    try:
        said = course.wait_for_readings(view, 1, timeout=2)
    finally:
        view.stop()
    assert "still runs the CSR sketch" in said and "notebook 03" in said
    assert settings.load().virtual


@pytest.mark.slow
def test_auto_without_a_board_says_it_chose_the_virtual_one(classroom: Path, capsys) -> None:
    course.start()  # only the virtual board is attached
    chosen = course.use("auto")
    assert chosen.virtual and "No real board is attached" in capsys.readouterr().out


# The terminal commands a message may offer as a fix, and the notebook call it must name too.
TERMINAL_FIXES = re.compile(
    r"`kit (cloud (up|down)|stop|sim|doctor --repair|unregister|use|csr|register|things|boards"
    r"|config-h)\b(?! --listen)"
)


def test_every_fix_the_kit_offers_works_in_a_notebook_too() -> None:
    # A student in JupyterLab needs no terminal: a message that offers a `kit ...` command as
    # the fix also names the notebook or the course call that does the same.
    offered = 0
    for path in sorted((checkout() / "kit").rglob("*.py")):
        if "cli" in path.parts:
            continue  # the terminal's own messages
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        parts = {  # an f-string's pieces: the whole f-string is read instead
            id(part)
            for node in ast.walk(tree)
            if isinstance(node, ast.JoinedStr)
            for part in node.values
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant | ast.JoinedStr) or id(node) in docstrings | parts:
                continue
            text = ast.unparse(node)
            if TERMINAL_FIXES.search(text):
                offered += 1
                # A notebook call, or a notebook by number ("notebook 03", "notebooks 01 and 02").
                assert re.search(r"course\.|notebooks? 0\d", text, re.I), f"{path.name}: {text}"
    assert offered >= 10


@pytest.mark.slow
def test_a_new_chip_removing_the_device_and_stopping_everything(classroom: Path) -> None:
    course.start()
    course.capture_csr()
    course.register()
    course.configure(course.wifi_form())
    assert vboard.find().firmware == "aws"

    said = course.start(new_chip=True)  # the notebook call beside `kit sim --reset`
    assert "factory-new" in said and not vboard.chip().locked and vboard.find().firmware == "csr"
    assert "AWS firmware" not in course.start()  # the new chip has no certificate to run with
    with pytest.raises(KitError, match="run notebook 01"):
        course.last_capture()  # the old key's CSR is gone with it: 02 cannot register it again
    assert "still runs the CSR sketch" in diagnosis.serial_log(timeout=0)  # 04's first cell

    assert "Removed" in course.unregister() and devices.all_records() == []
    assert "no devices" in course.teardown()

    (kit_home() / "settings.json").write_text("{ not json")
    assert "settings.json.damaged-" in course.repair() and settings.load().virtual

    stopped = subprocess.run(
        [sys.executable, "-m", "kit.cli", "stop"], capture_output=True, text=True, check=True
    ).stdout
    assert (
        "Stopped the virtual board 'default'." in stopped and "Stopped the local cloud." in stopped
    )
    assert vboard.running_boards() == [] and service.service_state() is None
    assert "Nothing" in course.stop()
    assert "not running: run course.start()" in diagnosis.serial_log(timeout=0)


@pytest.mark.slow
def test_05_shows_one_device_after_a_terminal_registered_another(classroom: Path) -> None:
    course.start()
    course.capture_csr()
    first = course.register()
    other = classroom / "greenhouse_2.csr"
    other.write_text(csr_pem("greenhouse_2"))
    said = subprocess.run(
        [sys.executable, "-m", "kit.cli", "register", str(other)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"greenhouse_2 is now the current device (it was {first.thing})." in said

    inside = course.look_inside()  # notebook 05: the current device, from its own record
    assert inside.csr.common_name == inside.certificate.common_name == "greenhouse_2"
    assert certs.compare(inside.csr, inside.certificate)
    mine = course.look_inside(first.thing)
    assert mine.csr.public_key_der == course.last_capture().csr.public_key_der


def test_a_device_is_reached_in_the_cloud_and_region_it_was_registered_in(
    classroom: Path,
) -> None:
    # 04, 05's clean-up and course.unregister() follow the device record, not today's settings.
    settings.save(settings.Settings(cloud="aws", region="us-east-1"))
    record = devices.DeviceRecord("d1", "aws", "host", 8883, "id", region="eu-west-1")
    assert steps.open_record_cloud(record).region == "eu-west-1"
    local = devices.DeviceRecord("d2", "local", "localhost", 8883, "id")
    assert steps.open_record_cloud(local).name == "local"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_04_speaks_of_what_the_board_does_now(classroom: Path) -> None:
    # Day two: the history of yesterday's readings and LED is there, but the board no longer
    # sends (01 ran again, 03 did not; then `kit stop`): nothing old passes for new.
    course.start()
    course.capture_csr()
    course.register()
    course.configure(course.wifi_form())
    view = course.dashboard()
    try:
        assert re.search(r"[3-9] new readings from", course.wait_for_readings(view, 3, 30))
        view.led.ask(60)
        assert "answered: its LED is at 60 %" in course.wait_for_led(view, 60)
    finally:
        view.stop()

    course.capture_csr()  # 01 again: the board runs the CSR sketch
    view = course.dashboard()
    try:
        assert len(view.watch.readings(view.thing)) >= 3  # the history, as the plot shows it
        assert view.watch.led_state(view.thing) == 60
        started = time.monotonic()
        said = course.wait_for_readings(view, 3, timeout=30)
        assert "No new reading" in said and "still runs the CSR sketch" in said, said
        assert time.monotonic() - started < 10  # known at once: no minute of waiting
        view.led.ask(40)
        said = course.wait_for_led(view, 40, timeout=2)
        assert "has not answered the LED command" in said and "60 %" not in said, said
        assert "still runs the CSR sketch" in said
        assert "waiting for the device to answer (it last said 60 %)" in view.led.state.value
    finally:
        view.stop()

    course.configure(course.wifi_form())  # 03: the board sends again
    view = course.dashboard()
    try:
        course.wait_for_readings(view, 1, timeout=30)
        steps.stop_everything()  # `kit stop` from a terminal
        said = course.wait_for_readings(view, 1, timeout=5)
        assert "The local cloud is not running" in said and "course.start()" in said, said
        deadline = time.monotonic() + 20
        while view.watch.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
        view.refresh()
        board, notebook = view.status.widget.value.split("<br>")
        assert "not known while this notebook is not connected" in board
        assert "This notebook: <b>not connected</b>" in notebook
    finally:
        view.stop()


@pytest.mark.slow
def test_a_refused_wifi_password_keeps_its_field(classroom: Path) -> None:
    course.start()
    course.capture_csr()
    course.register()
    form = course.wifi_form("Classroom")
    form.password.value = "seven77"  # one character short
    with pytest.raises(KitError, match="7 characters") as refused:
        course.configure(form)
    assert "seven77" not in str(refused.value)  # the message never shows it
    assert form.password.value == "seven77"  # kept (masked) to be corrected
    assert "password: typed (hidden)" in repr(form)
    form.password.value = "seven777"
    course.configure(form)
    assert form.password.value == ""  # in config.h now, and in no widget state
    assert "seven777" in (classroom / "config.h").read_text()


def test_the_policy_demonstration_needs_the_virtual_board(classroom: Path, capsys) -> None:
    settings.save(settings.Settings(board="/dev/ttyACM0", cloud="local"))  # a real board
    course.misbehave("wrong-client-id")
    said = capsys.readouterr().out
    assert 'course.use("virtual")' in said and "The board's serial log" not in said
