"""`kit csr` from a terminal, as a student runs it: a real process, the board the settings choose
(a virtual board in the background, or a pty that is not one), and the messages it leaves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import serial
from boards import ScriptedBoard, declining_lock
from test_board import QUICK, openssl_verifies
from test_cli import kit

from kit import board, certs, errors
from kit.sim import board as vboard

STOPPED = "(y/N) [N]: N\nUnfortunately you can't proceed without locking it :(\n"


@pytest.fixture
def virtual_settings():
    """The course's settings choose the virtual board; whatever a test starts is stopped."""
    chose = kit("use", "virtual")
    assert chose.returncode == 0, chose.stderr
    yield
    vboard.stop(vboard.DEFAULT_BOARD)


def test_kit_csr_starts_the_virtual_board_the_settings_choose(virtual_settings, tmp_path) -> None:
    with pytest.raises(errors.VirtualBoardError):
        vboard.find()  # nothing runs yet
    out = tmp_path / "csr.pem"
    done = kit("csr", "--lock", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "The virtual board was not running: the kit started it" in done.stderr
    assert "Talking to sim://default, the virtual board the course's settings choose" in done.stderr
    csr = certs.load_csr(out.read_text())
    assert csr.common_name == vboard.find().chip_serial == vboard.chip().serial_number
    assert openssl_verifies(out.read_text(), tmp_path)
    again = kit("csr")  # the board runs now, its chip locked: nothing to start, nothing to ask
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert "started" not in again.stderr


def test_kit_csr_without_lock_answers_no_and_lock_works_straight_after(virtual_settings) -> None:
    declined = kit("csr")
    assert declined.returncode == 1
    # The dialog as the board printed it, the kit's "N" in it, then the kit's message.
    dialog, message = declined.stderr.rsplit("Board problem: ", 1)
    assert dialog.endswith(STOPPED)
    assert message.startswith("This board's crypto chip is not locked yet.")
    assert 'the kit answered "N" and the board stopped' in message
    assert "Run the capture again with locking chosen (`kit csr --lock`" in message
    assert "reset" not in declined.stderr  # a virtual board has no button to press
    log = (vboard.find().serial_log).read_bytes()
    assert log.endswith(STOPPED.replace("\n", "\r\n").encode())
    assert not vboard.chip().locked

    began = time.monotonic()
    locked = kit("csr", "--lock")  # opening the port restarts the stopped sketch
    assert locked.returncode == 0, locked.stderr
    assert time.monotonic() - began < board.Timeouts().first_output
    assert locked.stdout.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert "ECCX08 locked successfully" in locked.stderr and vboard.chip().locked


def test_a_stuck_virtual_board_is_restarted_as_the_message_says(virtual_settings) -> None:
    info = vboard.start(instant_chip=True)
    with serial.Serial(info.pty, timeout=3) as monitor:  # a serial monitor left at a question
        assert monitor.read_until(b"[N]: ").endswith(b"(y/N) [N]: ")
    time.sleep(0.2)
    with pytest.raises(errors.BoardSilentError) as caught:
        board.capture_csr(info.url, lock=True, timeouts=QUICK)
    message = str(caught.value)
    assert "reset" not in message
    assert "Restart the virtual board (`kit stop` in a terminal" in message
    # What the message says works: `kit stop`, then the capture again.
    assert kit("stop").returncode == 0
    again = kit("csr", "--lock")
    assert again.returncode == 0, again.stderr
    assert "the kit started it" in again.stderr
    assert again.stdout.startswith("-----BEGIN CERTIFICATE REQUEST-----")


def test_kit_csr_on_the_real_board_the_settings_name() -> None:
    peer = ScriptedBoard(declining_lock(3))
    try:
        assert kit("use", peer.path).returncode == 0
        done = kit("csr")
    finally:
        peer.close()
    assert done.returncode == 1
    assert peer.received == b"N\r\n|"  # "N", never "y"
    assert f"Talking to {peer.path}, the course's board" in done.stderr
    assert done.stderr.rstrip().endswith(
        "Press the board's reset button, then run the capture again with locking chosen "
        "(`kit csr --lock`, or the checkbox in notebook 01) to lock it."
    )


def test_kit_csr_when_the_settings_port_is_gone(tmp_path: Path) -> None:
    missing = str(tmp_path / "ttyACM0")
    assert kit("use", missing).returncode == 0
    done = kit("csr")
    assert done.returncode == 1
    assert f"There is no port {missing}" in done.stderr
    assert "run `kit use auto` in a terminal" in done.stderr
