"""The student's wrong turns through the course's calls, on the virtual board and the local cloud
as background processes (as in JupyterLab): re-running a step is safe, starting again never undoes
a later step, skipping setup works, and a dashboard that waits says why."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit import course, devices, settings
from kit.cloud import service
from kit.errors import ThingTakenError
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
def test_running_01_twice_then_02_keeps_the_registered_key(classroom: Path) -> None:
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
    replaced = course.register(replace=True)
    assert replaced.created and devices.load().certificate_pem == replaced.certificate_pem


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
        assert "readings from" in course.wait_for_readings(view, 2, timeout=30)
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
