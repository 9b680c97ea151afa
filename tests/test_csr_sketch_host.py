"""The real CSR sketch (sketches/ECCX08CSR), compiled with g++ against stand-in Arduino headers
and run on a pty: the kit captures a CSR from it, and its bytes on the wire match the virtual
board's line for line (apart from the chip serial number and the CSR's base64)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import time
import tty
from pathlib import Path

import pytest
from helpers import csr_pem
from test_board import QUICK, openssl_verifies

from kit import board, errors
from kit.sim import board as vboard
from kit.sim.csr_sketch import SketchSettings
from kit.sim.eccx08 import ChipTiming

ROOT = Path(__file__).resolve().parent.parent
STUBS = Path(__file__).parent / "arduino_stubs"


@pytest.fixture(scope="module")
def sketch_binary(tmp_path_factory) -> Path:
    """The sketch compiled for the host, as the Arduino IDE would compile it for the board."""
    out = tmp_path_factory.mktemp("sketch") / "ECCX08CSR"
    built = subprocess.run(
        [
            "g++",
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            str(STUBS),
            "-x",
            "c++",
            str(ROOT / "sketches" / "ECCX08CSR" / "ECCX08CSR.ino"),
            "-x",
            "c++",
            str(STUBS / "main.cpp"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    return out


class HostBoard:
    """The compiled sketch running with its Serial on the master side of a fresh pty."""

    def __init__(
        self,
        binary: Path,
        tmp_path: Path,
        serial: str,
        locked: bool,
        name: str,
        no_chip: bool = False,
    ) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        os.close(slave)  # so the sketch's `while (!Serial)` waits for the kit to open it
        csr_file = tmp_path / "csr.pem"
        csr_file.write_text(csr_pem(name))
        self.received = tmp_path / "received.bin"  # every byte the sketch read
        env = {
            **os.environ,
            "STUB_RX_LOG": str(self.received),
            "STUB_SERIAL_FD": str(master),
            "STUB_SERIAL": serial,
            "STUB_LOCKED": "1" if locked else "0",
            "STUB_CSR_FILE": str(csr_file),
        }
        if no_chip:
            env["STUB_NO_CHIP"] = "1"
        self.process = subprocess.Popen([str(binary)], pass_fds=[master], env=env)
        os.close(master)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def normalised(transcript: str, serial: str) -> str:
    """The transcript with the chip serial number and the CSR's base64 taken out."""
    # The capture ends at the END line; the sketch's final CRLF may or may not have arrived.
    text = transcript.replace(serial, "<SERIAL>").rstrip()
    return re.sub(
        r"(-----BEGIN CERTIFICATE REQUEST-----\n)[A-Za-z0-9+/=\n]+(-----END)",
        r"\1<BASE64>\n\2",
        text,
    )


@pytest.mark.parametrize("locked", [False, True], ids=["unlocked", "locked"])
@pytest.mark.parametrize("name", [None, "device_01"], ids=["serial-name", "custom-name"])
def test_sketch_on_a_pty_matches_the_virtual_board(sketch_binary, tmp_path, locked, name) -> None:
    serial = "0123C13DA283AFA5EE"
    host = HostBoard(sketch_binary, tmp_path, serial, locked, name or serial)
    try:
        real = board.capture_csr(host.path, name=name, slot=2, lock=True, timeouts=QUICK)
    finally:
        host.close()
    assert real.csr.common_name == (name or serial)
    assert real.chip_serial == serial and real.locked_now is (not locked)
    assert openssl_verifies(real.csr.pem, tmp_path)

    virtual = vboard.VirtualBoard("twin", SketchSettings("example"), ChipTiming.instant())
    if locked:
        virtual.chip.write_configuration_and_lock()
    with virtual:
        twin = board.capture_csr(
            virtual.port.pty_path, name=name, slot=2, lock=True, timeouts=QUICK
        )
    assert normalised(real.transcript, serial) == normalised(
        twin.transcript, virtual.chip.serial_number
    )


def test_sketch_without_a_chip(sketch_binary, tmp_path) -> None:
    host = HostBoard(sketch_binary, tmp_path, "0123C13DA283AFA5EE", True, "x", no_chip=True)
    try:
        with pytest.raises(errors.NoChipError):
            board.capture_csr(host.path, timeouts=QUICK)
    finally:
        host.close()


def test_sketch_is_never_locked_without_consent(sketch_binary, tmp_path) -> None:
    host = HostBoard(sketch_binary, tmp_path, "0123C13DA283AFA5EE", False, "x")
    shown: list[str] = []
    try:
        with pytest.raises(errors.ChipNotLockedError, match="PERMANENT") as caught:
            board.capture_csr(host.path, on_output=shown.append, timeouts=QUICK)
        time.sleep(0.5)
        assert host.received.read_bytes() == b"N\r\n"  # the only answer the sketch read
    finally:
        host.close()
    # The real sketch stopped, as the kit's message says; its reset button restarts it.
    assert "".join(shown).endswith(
        "[N]: N\r\nUnfortunately you can't proceed without locking it :(\r\n"
    )
    assert 'the kit answered "N" and the board stopped' in str(caught.value)
    assert "Press the board's reset button, then run the capture again" in str(caught.value)
