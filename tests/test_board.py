"""Capturing CSRs over real serial transports (a pty and sim://) from the virtual board."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from boards import ScriptedBoard, declining_lock
from cryptography.hazmat.primitives import serialization
from helpers import csr_pem
from serial.tools.list_ports_common import ListPortInfo

from kit import board, board_ports, errors
from kit.board import BoardPort, Timeouts
from kit.sim import board as vboard
from kit.sim.csr_sketch import SketchSettings
from kit.sim.eccx08 import ChipTiming, new_serial_number

QUICK = Timeouts(first_output=1.5, step=3, total=20)


@pytest.fixture
def make_board():
    """Start in-process virtual boards; close them after the test."""
    started: list[vboard.VirtualBoard] = []

    def make(variant="example", fail=None, locked=False, name="default") -> vboard.VirtualBoard:
        device = vboard.VirtualBoard(name, SketchSettings(variant, fail), ChipTiming.instant())
        if locked:
            device.chip.write_configuration_and_lock()
        started.append(device.start())
        return device

    yield make
    for device in started:
        device.close()


def port_of(device: vboard.VirtualBoard, transport: str) -> str:
    return device.port.pty_path if transport == "pty" else device.info.url


def openssl_verifies(pem: str, tmp_path: Path) -> bool:
    path = tmp_path / "csr.pem"
    path.write_text(pem)
    done = subprocess.run(
        ["openssl", "req", "-in", str(path), "-noout", "-verify"], capture_output=True, text=True
    )
    return "verify OK" in done.stdout + done.stderr


def same_key(a, b) -> bool:
    form = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*form) == b.public_bytes(*form)


@pytest.mark.parametrize("transport", ["pty", "sim"])
@pytest.mark.parametrize("variant", ["example", "workshop"])
@pytest.mark.parametrize("locked", [False, True], ids=["unlocked", "locked"])
@pytest.mark.parametrize("name", [None, "device_01"], ids=["serial-name", "custom-name"])
def test_capture(make_board, tmp_path, transport, variant, locked, name) -> None:
    device = make_board(variant=variant, locked=locked)
    shown: list[str] = []
    capture = board.capture_csr(
        port_of(device, transport), name=name, lock=True, on_output=shown.append, timeouts=QUICK
    )
    serial_number = device.chip.serial_number
    assert capture.chip_serial == serial_number
    assert capture.csr.common_name == (name or serial_number)
    assert capture.locked_now is (not locked)
    assert capture.variant == variant
    assert capture.slot == 0 and capture.new_key
    assert same_key(capture.csr.public_key, device.chip.public_key(0))
    assert openssl_verifies(capture.csr.pem, tmp_path)
    assert "".join(shown) == capture.transcript
    assert [a.string_type for a in capture.csr.subject] == ["PrintableString"]
    assert ("Device Name [" in capture.transcript) is (variant == "workshop")


def test_socket_url(make_board) -> None:
    device = make_board(locked=True)
    capture = board.capture_csr(device.port.socket_url, timeouts=QUICK)
    assert capture.csr.common_name == device.chip.serial_number


def test_board_waits_for_the_host_before_printing(make_board) -> None:
    device = make_board(locked=True)
    time.sleep(0.3)
    assert (device.folder / "serial.log").read_bytes() == b""
    board.capture_csr(device.info.url, timeouts=QUICK)
    assert (device.folder / "serial.log").read_bytes().startswith(b"ECCX08 Serial Number = ")


def test_boards_side_by_side(make_board) -> None:
    first, second = make_board(name="bench-1", locked=True), make_board(name="bench-2", locked=True)
    assert first.chip.serial_number != second.chip.serial_number
    a = board.capture_csr("sim://bench-1", timeouts=QUICK)
    b = board.capture_csr("sim://bench-2", timeouts=QUICK)
    assert (a.chip_serial, b.chip_serial) == (first.chip.serial_number, second.chip.serial_number)


@pytest.mark.parametrize("slot", range(5))
def test_every_slot(make_board, tmp_path, slot) -> None:
    device = make_board(locked=True)
    capture = board.capture_csr(device.info.url, slot=slot, timeouts=QUICK)
    assert capture.slot == slot
    assert f"[0]: {slot}\r\n" in capture.transcript
    assert same_key(capture.csr.public_key, device.chip.public_key(slot))
    assert openssl_verifies(capture.csr.pem, tmp_path)


def test_keep_the_slot_key(make_board) -> None:
    device = make_board(locked=True)
    first = board.capture_csr(device.info.url, slot=3, timeouts=QUICK)
    again = board.capture_csr(device.info.url, slot=3, new_key=False, timeouts=QUICK)
    assert "(Y/n) [Y]: n\r\n" in again.transcript
    assert same_key(first.csr.public_key, again.csr.public_key)
    fresh = board.capture_csr(device.info.url, slot=3, timeouts=QUICK)
    assert not same_key(first.csr.public_key, fresh.csr.public_key)


def test_subject_fields_are_empty_unless_given(make_board) -> None:
    device = make_board(locked=True)
    plain = board.capture_csr(device.info.url, timeouts=QUICK)
    assert [a.short_name for a in plain.csr.subject] == ["CN"]
    full = board.capture_csr(device.info.url, subject={"C": "US", "O": "Uni"}, timeouts=QUICK)
    assert [(a.short_name, a.value) for a in full.csr.subject][:2] == [("C", "US"), ("O", "Uni")]


@pytest.mark.parametrize("transport", ["pty", "sim"])
def test_no_lock_without_consent(make_board, transport) -> None:
    device = make_board(locked=False)
    shown: list[str] = []
    with pytest.raises(errors.ChipNotLockedError) as caught:
        board.capture_csr(port_of(device, transport), on_output=shown.append, timeouts=QUICK)
    assert not device.chip.locked
    # The kit answered "N" (only "y" locks) and the sketch stopped, as a real one does.
    said = b"(y/N) [N]: N\r\nUnfortunately you can't proceed without locking it :(\r\n"
    assert (device.folder / "serial.log").read_bytes().endswith(said)
    assert "".join(shown).endswith(said.decode())
    message = str(caught.value)
    assert 'the kit answered "N" and the board stopped' in message
    assert "Run the capture again with locking chosen (`kit csr --lock`" in message
    assert "reset" not in message  # a virtual board has no button
    # Opening the port again restarts the stopped sketch: locking with consent works at once.
    let_go(device)
    started = time.monotonic()
    capture = board.capture_csr(port_of(device, transport), lock=True, timeouts=QUICK)
    assert capture.locked_now and device.chip.locked
    assert time.monotonic() - started < QUICK.first_output


def test_no_lock_without_consent_on_a_real_board() -> None:
    """A board that is not virtual hears "N" too, and its stopped sketch needs the button."""
    peer = ScriptedBoard(declining_lock(2))
    try:
        with pytest.raises(errors.ChipNotLockedError) as caught:
            board.capture_csr(peer.path, timeouts=QUICK)
    finally:
        peer.close()
    assert peer.received == b"N\r\n|"
    assert str(caught.value).endswith(
        "Press the board's reset button, then run the capture again with locking chosen "
        "(`kit csr --lock`, or the checkbox in notebook 01) to lock it."
    )


@pytest.mark.parametrize(
    ("fail", "error", "words"),
    [
        ("no-chip", errors.NoChipError, "no ECCX08 crypto chip"),
        ("keygen", errors.CsrGenerationError, "could not prepare the key in slot 0"),
        ("csr", errors.CsrGenerationError, "could not sign the CSR"),
        ("lock", errors.LockFailedError, "could not be locked"),
    ],
)
def test_failure_paths(make_board, fail, error, words) -> None:
    device = make_board(fail=fail, locked=False)
    with pytest.raises(error, match=words):
        board.capture_csr(device.info.url, lock=True, timeouts=QUICK)


def test_keeping_a_key_from_an_empty_slot_fails_clearly(make_board) -> None:
    device = make_board(locked=True)
    with pytest.raises(errors.CsrGenerationError, match="generate a new key"):
        board.capture_csr(device.info.url, slot=4, new_key=False, timeouts=QUICK)


@pytest.mark.parametrize("transport", ["pty", "sim"])
def test_silence_when_the_dialog_already_started(make_board, transport) -> None:
    device = make_board(locked=False)
    with serial.Serial(device.port.pty_path, timeout=2) as early:  # e.g. a serial monitor
        assert b"(y/N) [N]: " in early.read_until(b"[N]: ")
    let_go(device)
    with pytest.raises(errors.BoardSilentError) as caught:
        board.capture_csr(port_of(device, transport), timeouts=QUICK)
    # A virtual board has no reset button: the message says what restarts it instead.
    assert "reset" not in str(caught.value)
    assert str(caught.value).endswith(
        "Restart the virtual board (`kit stop` in a terminal, course.stop() in a notebook: they "
        "stop the local cloud too, and the capture starts the board again), then run this again."
    )
    vboard_reset(device)
    assert board.capture_csr(device.port.pty_path, lock=True, timeouts=QUICK).locked_now


def test_silence_on_a_real_board_names_its_reset_button() -> None:
    peer = ScriptedBoard([("hang", b"3")])
    try:
        with pytest.raises(errors.BoardSilentError) as caught:
            board.capture_csr(peer.path, timeouts=QUICK)
    finally:
        peer.close()
    assert str(caught.value).endswith("Press the board's reset button once, then run this again.")


def let_go(device: vboard.VirtualBoard) -> None:
    """Wait until the board has seen the last program let go of its port, as it does between
    two runs of a person's capture."""
    deadline = time.monotonic() + 5
    while device.port.host_connected and time.monotonic() < deadline:
        time.sleep(0.01)


def vboard_reset(device: vboard.VirtualBoard) -> None:
    """Press reset as a person would: after the last program let go of the port."""
    let_go(device)
    deadline = time.monotonic() + 5
    device.reset_button.set()
    while device.reset_button.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)  # the sketch has restarted


@pytest.mark.parametrize("transport", ["pty", "sim"])
def test_unplugged_mid_dialog(make_board, transport) -> None:
    device = make_board(locked=True)

    def pull_the_cable(text: str) -> None:
        if "Hi there" in text:
            device.port.close()

    with pytest.raises((errors.BoardDisconnectedError, errors.BoardSilentError)) as caught:
        board.capture_csr(port_of(device, transport), on_output=pull_the_cable, timeouts=QUICK)
    assert "port went away" in str(caught.value) or "stopped talking" in str(caught.value)
    assert "reset" not in str(caught.value)  # it was a virtual board


def test_name_is_checked_before_anything_is_sent() -> None:
    with pytest.raises(errors.DeviceNameError, match="a space"):
        board.capture_csr("sim://no-such-board", name="my device")


def test_bad_slot_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(errors.CsrGenerationError, match="0, 1, 2, 3 or 4"):
        board.capture_csr("sim://no-such-board", slot=7)


def scripted(dialog: bytes, csr: str) -> list[tuple[str, bytes]]:
    return [
        ("say", dialog),
        ("hear", b""),
        ("say", b"n\r\n\r\nHere's your CSR, enjoy!\r\n\r\n"),
        ("say", csr.encode() + b"\r\n"),
        ("hang", b"1"),
    ]


def test_garbled_csr() -> None:
    good = csr_pem("0123C13DA283AFA5EE")
    lines = good.splitlines()
    lines[2] = lines[2][:20] + "@@@@" + lines[2][24:]
    peer = ScriptedBoard(
        scripted(
            b"ECCX08 Serial Number = 0123C13DA283AFA5EE\r\n\r\n"
            b"Would you like to generate a new private key? (Y/n) [Y]: ",
            "\n".join(lines) + "\n",
        )
    )
    try:
        with pytest.raises(errors.GarbledCsrError, match="arrived damaged"):
            board.capture_csr(peer.path, new_key=False, timeouts=QUICK)
    finally:
        peer.close()


def test_csr_for_another_name_is_refused() -> None:
    peer = ScriptedBoard(
        scripted(
            b"ECCX08 Serial Number = 0123C13DA283AFA5EE\r\n\r\n"
            b"Would you like to generate a new private key? (Y/n) [Y]: ",
            csr_pem("someone_else"),
        )
    )
    try:
        with pytest.raises(errors.GarbledCsrError, match="not for '0123C13DA283AFA5EE'"):
            board.capture_csr(peer.path, new_key=False, timeouts=QUICK)
    finally:
        peer.close()


def test_unknown_prompt_means_the_wrong_sketch() -> None:
    peer = ScriptedBoard([("say", b"Enter WiFi password [none]: "), ("hang", b"2")])
    try:
        with pytest.raises(errors.UnexpectedOutputError, match="Is the CSR sketch"):
            board.capture_csr(peer.path, timeouts=QUICK)
    finally:
        peer.close()


def test_truncated_csr_times_out_with_a_reason() -> None:
    csr = csr_pem("0123C13DA283AFA5EE")
    peer = ScriptedBoard(
        scripted(
            b"ECCX08 Serial Number = 0123C13DA283AFA5EE\r\n\r\n"
            b"Would you like to generate a new private key? (Y/n) [Y]: ",
            csr[:200],
        )
    )
    try:
        with pytest.raises(errors.BoardSilentError, match="stopped talking"):
            board.capture_csr(peer.path, new_key=False, timeouts=Timeouts(1, 1, 10))
    finally:
        peer.close()


# Finding boards: a pure function of the port records.


def port(device: str, vid=None, pid=None, serial_number=None, description="") -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number, info.description = vid, pid, serial_number, description
    return info


@pytest.mark.parametrize(
    ("record", "model", "kind", "mode"),
    [
        (port("/dev/ttyACM0", 0x2341, 0x8054, "ABC"), "MKR WiFi 1010", "supported", "sketch"),
        (port("COM3", 0x2341, 0x0054), "MKR WiFi 1010", "supported", "bootloader"),
        (port("/dev/ttyACM1", 0x2341, 0x8057), "Nano 33 IoT", "supported", "sketch"),
        (port("/dev/ttyACM1", 0x2341, 0x0057), "Nano 33 IoT", "supported", "bootloader"),
        (port("/dev/ttyACM2", 0x2341, 0x0043), "Arduino Uno", "unsupported", "sketch"),
        (port("/dev/ttyACM2", 0x2341, 0x804E), "Arduino MKR1000", "unsupported", "sketch"),
        (
            port("/dev/ttyACM2", 0x2A03, 0x9999),
            "Arduino board (unrecognised model)",
            "unsupported",
            "sketch",
        ),
        (port("/dev/ttyUSB0", 0x10C4, 0xEA60, description="CP2102"), "CP2102", "unknown", "sketch"),
        (port("/dev/ttyS0"), "unknown serial device", "unknown", "sketch"),
    ],
)
def test_recognise(record, model, kind, mode) -> None:
    found = board.recognise(record)
    assert (found.model, found.kind, found.mode) == (model, kind, mode)


def test_recognise_keeps_the_usb_serial() -> None:
    assert board.recognise(port("/dev/ttyACM0", 0x2341, 0x8054, "4F3A")).usb_serial == "4F3A"


MKR = board.recognise(port("/dev/ttyACM0", 0x2341, 0x8054))
NANO = board.recognise(port("/dev/ttyACM1", 0x2341, 0x8057))
BOOT = board.recognise(port("/dev/ttyACM0", 0x2341, 0x0054))
UNO = board.recognise(port("/dev/ttyACM0", 0x2341, 0x0043))
OTHER = board.recognise(port("/dev/ttyS0"))
VIRTUAL = BoardPort("sim://default", "virtual MKR WiFi 1010 (default)", "virtual")


def test_choose_the_only_board() -> None:
    assert board.choose_board([OTHER, MKR]) == MKR
    assert board.choose_board([VIRTUAL]) == VIRTUAL


@pytest.mark.parametrize(
    ("boards", "error", "words"),
    [
        ([], errors.NoBoardError, "USB cable that carries data"),
        ([OTHER], errors.NoBoardError, "other serial ports: /dev/ttyS0"),
        ([MKR, NANO], errors.SeveralBoardsError, "2 boards are attached"),
        ([BOOT], errors.BootloaderModeError, "Press reset once"),
        ([UNO], errors.UnsupportedBoardError, "needs an MKR WiFi 1010 or Nano 33 IoT"),
    ],
)
def test_choose_board_explains(boards, error, words) -> None:
    with pytest.raises(error, match=words):
        board.choose_board(boards)


def test_choose_asks_among_several() -> None:
    assert board.choose_board([MKR, NANO], ask=lambda options: options[1]) == NANO


def test_find_boards_lists_running_virtual_boards(make_board) -> None:
    device = make_board(name="bench-2")
    found = [b for b in board.find_boards() if b.kind == "virtual"]
    assert [b.device for b in found] == ["sim://bench-2"]
    assert found[0].usb_serial == device.chip.serial_number


# Opening ports


def test_missing_port() -> None:
    with pytest.raises(errors.BoardDisconnectedError, match="`kit use auto`"):
        board.open_port("/dev/ttyACM99")


def test_port_held_by_another_program(make_board) -> None:
    device = make_board()
    with (
        serial.Serial(device.port.pty_path, exclusive=True),
        pytest.raises(errors.PortBusyError, match="Serial Monitor"),
    ):
        board.open_port(device.port.pty_path)


def test_permission_denied_names_the_dialout_group() -> None:
    import errno

    error = board_ports._open_error(
        "/dev/ttyACM0", serial.SerialException(errno.EACCES, "Permission denied")
    )
    assert isinstance(error, errors.PortPermissionError)
    if sys.platform.startswith("linux"):
        assert "dialout" in str(error)


def test_sim_url_for_a_board_that_is_not_running() -> None:
    with pytest.raises(errors.KitError, match="kit sim --board ghost"):
        board.open_port("sim://ghost")


# The virtual chip


def test_serial_numbers_look_like_real_ones() -> None:
    for _ in range(20):
        assert re.fullmatch(r"0123[0-9A-F]{12}EE", new_serial_number())


def test_chip_keeps_its_identity_and_keys_are_private(make_board) -> None:
    device = make_board(locked=True)
    board.capture_csr(device.info.url, slot=1, timeouts=QUICK)
    key_file = device.folder / "chip" / "slot1.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = vboard.chip("default")
    assert again.serial_number == device.chip.serial_number
    assert same_key(again.public_key(1), device.chip.public_key(1))
    public = [n for n in dir(again) if not n.startswith("_")]
    assert not [n for n in public if "private" in n]


def test_factory_reset(make_board) -> None:
    chip = vboard.chip("fresh", ChipTiming.instant())
    chip.write_configuration_and_lock()
    chip.generate_key(0)
    chip.factory_reset()
    assert not chip.locked and not chip.has_key(0)


# The board as a process, from the command line


def kit(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args], capture_output=True, text=True, timeout=60, **kw
    )


def test_background_board_second_start_refused_and_kit_csr(tmp_path) -> None:
    info = vboard.start("cli", instant_chip=True)
    try:
        refused = kit("sim", "--board", "cli")
        assert refused.returncode == 1
        assert "already running" in refused.stderr
        out = tmp_path / "csr.pem"
        done = kit("csr", "--port", info.pty, "--lock", "--name", "lab_3", "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert "ECCX08 locked successfully" in done.stderr
        assert openssl_verifies(out.read_text(), tmp_path)
        printed = kit("csr", "--port", info.url, "--slot", "2")
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout.startswith("-----BEGIN CERTIFICATE REQUEST-----")
        assert info.serial_log.exists() and b"Here's your CSR" in info.serial_log.read_bytes()
    finally:
        assert vboard.stop("cli")
    with pytest.raises(errors.KitError, match="not running"):
        vboard.find("cli")


def test_kit_csr_without_lock_never_locks(tmp_path) -> None:
    info = vboard.start("shy", instant_chip=True, reset_chip=True)
    try:
        done = kit("csr", "--port", info.url)
        assert done.returncode == 1
        assert "PERMANENT" in done.stderr
        assert not vboard.chip("shy").locked
    finally:
        vboard.stop("shy")


def test_kit_sim_prints_its_ports_first(tmp_path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "kit.cli", "sim", "--board", "fg", "--instant-chip"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        first = [process.stdout.readline() for _ in range(4)]
        assert first[0].startswith("Virtual MKR WiFi 1010 'fg'")
        assert any(line.strip().startswith("serial port: /dev/") for line in first)
        assert any("socket://127.0.0.1:" in line for line in first)
        assert any("sim://fg" in line for line in first)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_background_board_reset_button_and_factory_reset() -> None:
    info = vboard.start("life", instant_chip=True)
    try:
        serial_number = info.chip_serial
        with serial.Serial(info.pty, timeout=3) as monitor:  # a serial monitor opened first
            assert monitor.read_until(b"[N]: ").endswith(b"(y/N) [N]: ")
        time.sleep(0.2)
        vboard.press_reset("life")
        time.sleep(0.3)
        capture = board.capture_csr(info.url, lock=True, slot=1, timeouts=QUICK)
        assert capture.locked_now
        listed = kit("boards")
        assert "sim://life" in listed.stdout and serial_number in listed.stdout
    finally:
        vboard.stop("life")
    assert vboard.chip("life").locked and vboard.chip("life").has_key(1)
    again = vboard.start("life", instant_chip=True, reset_chip=True)
    try:
        assert again.chip_serial == serial_number  # the serial number is burned in
        assert not vboard.chip("life").locked and not vboard.chip("life").has_key(1)
    finally:
        vboard.stop("life")
