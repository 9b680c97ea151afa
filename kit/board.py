"""Boards on serial ports: find them, open them, and drive the CSR sketch's dialog.

The same code talks to a real MKR WiFi 1010 on /dev/ttyACM0 or COM3 and to a virtual board on a
pty or `sim://<name>`: a virtual board is a port like any other.
"""

from __future__ import annotations

import errno
import functools
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import serial
from serial.tools import list_ports

from kit import certs
from kit.errors import (
    BoardDisconnectedError,
    BoardSilentError,
    BootloaderModeError,
    ChipNotLockedError,
    CsrGenerationError,
    DeviceNameError,
    GarbledCsrError,
    KitError,
    LockFailedError,
    NoBoardError,
    NoChipError,
    PortBusyError,
    PortPermissionError,
    SeveralBoardsError,
    UnexpectedOutputError,
    UnsupportedBoardError,
)

BAUD = 9600
ARDUINO_VIDS = {0x2341, 0x2A03}
# (model, mode) for the boards the course supports.
SUPPORTED = {
    0x8054: ("MKR WiFi 1010", "sketch"),
    0x0054: ("MKR WiFi 1010", "bootloader"),
    0x8057: ("Nano 33 IoT", "sketch"),
    0x0057: ("Nano 33 IoT", "bootloader"),
}
# Arduino boards a student may plug in by mistake: named, but not usable with the AWS sketch.
OTHER_ARDUINOS = {
    0x0001: "Uno",
    0x0043: "Uno",
    0x0042: "Mega 2560",
    0x8036: "Leonardo",
    0x8037: "Micro",
    0x804E: "MKR1000",
    0x805A: "Nano 33 BLE",
    0x1002: "Uno R4 WiFi",
}

Kind = Literal["supported", "unsupported", "unknown", "virtual"]


@dataclass(frozen=True)
class BoardPort:
    """A serial port and what is known about the board on it."""

    device: str  # a path (/dev/ttyACM0, COM3) or a URL (sim://default)
    model: str
    kind: Kind
    mode: str = "sketch"  # or "bootloader"
    usb_serial: str = ""
    description: str = ""

    @property
    def usable(self) -> bool:
        """Whether the course can use this board as it is now."""
        return self.kind in ("supported", "virtual") and self.mode == "sketch"

    def __str__(self) -> str:
        extra = ", bootloader mode" if self.mode == "bootloader" else ""
        usb = f", USB serial {self.usb_serial}" if self.usb_serial else ""
        return f"{self.device}: {self.model}{extra}{usb}"


def recognise(port: Any) -> BoardPort:
    """What board a port belongs to, from its USB ids (a pure function of the port record)."""
    device = port.device
    vid, pid = getattr(port, "vid", None), getattr(port, "pid", None)
    usb = getattr(port, "serial_number", None) or ""
    description = getattr(port, "description", "") or ""
    if vid in ARDUINO_VIDS and pid in SUPPORTED:
        model, mode = SUPPORTED[pid]
        return BoardPort(device, model, "supported", mode, usb, description)
    if vid in ARDUINO_VIDS:
        model = f"Arduino {OTHER_ARDUINOS.get(pid, 'board (unrecognised model)')}"
        return BoardPort(device, model, "unsupported", "sketch", usb, description)
    return BoardPort(device, description or "unknown serial device", "unknown", "sketch", usb)


def find_boards(include_virtual: bool = True) -> list[BoardPort]:
    """Every serial port with what is on it, real boards first, then running virtual boards."""
    found = [recognise(port) for port in list_ports.comports()]
    order = {"supported": 0, "unsupported": 1, "unknown": 2}
    found.sort(key=lambda b: (order[b.kind], b.device))
    if include_virtual:
        for provider in providers():
            found += provider.ports()
    return found


@dataclass(frozen=True)
class BoardProvider:
    """Boards that are not USB serial ports (the virtual board), plugged in by an entry point.

    A provider's module registers its URL scheme with pyserial when it is imported.
    """

    scheme: str  # its ports are URLs <scheme>://...
    ports: Callable[[], list[BoardPort]]  # the ports it has now
    check: Callable[[str], None]  # raise a KitError saying how to start the board behind a URL


PROVIDER_GROUP = "kit.board_providers"


@functools.cache
def providers() -> tuple[BoardProvider, ...]:
    """The installed board providers, loaded the first time boards are listed or opened."""
    return tuple(entry.load() for entry in metadata.entry_points(group=PROVIDER_GROUP))


def choose_board(
    boards: Iterable[BoardPort] | None = None,
    ask: Callable[[list[BoardPort]], BoardPort] | None = None,
) -> BoardPort:
    """The one board to use, or an error that says what to do; `ask` picks among several."""
    boards = list(find_boards() if boards is None else boards)
    arduinos = [b for b in boards if b.kind != "unknown"]
    usable = [b for b in arduinos if b.usable]
    if len(usable) == 1:
        return usable[0]
    if len(usable) > 1:
        if ask is not None:
            return ask(usable)
        listing = "; ".join(str(b) for b in usable)
        raise SeveralBoardsError(
            f"{len(usable)} boards are attached ({listing}). Say which one to use with --port "
            "(or in the settings cell), or unplug the others."
        )
    bootloader = [b for b in arduinos if b.mode == "bootloader"]
    if bootloader:
        raise BootloaderModeError(
            f"The {bootloader[0].model} on {bootloader[0].device} is in bootloader mode (its "
            "LED pulses: the reset button was pressed twice). Press reset once, or upload the "
            "sketch again, then retry."
        )
    if arduinos:
        raise UnsupportedBoardError(
            f"{arduinos[0].model} on {arduinos[0].device} is not supported: the course needs an "
            "MKR WiFi 1010 or Nano 33 IoT (they have the ECCX08 crypto chip and the WiFi module)."
        )
    unknown = [b.device for b in boards]
    extra = f" (other serial ports: {', '.join(unknown)})" if unknown else ""
    raise NoBoardError(
        f"No board found{extra}. Plug the board in with a USB cable that carries data (some "
        "cables only charge), wait a few seconds and try again, or use the virtual board: "
        "`kit sim` in another terminal."
    )


def open_port(device: str, timeout: float = 0.1) -> serial.SerialBase:
    """Open a board's port by path or URL (socket://, sim://), with errors that say what to do."""
    is_url = "://" in device
    for provider in providers() if is_url else ():
        if device.startswith(f"{provider.scheme}://"):
            provider.check(device)
    try:
        if is_url:
            return serial.serial_for_url(device, baudrate=BAUD, timeout=timeout)
        return serial.Serial(device, baudrate=BAUD, timeout=timeout, exclusive=True)
    except serial.SerialException as error:
        raise _open_error(device, error) from None
    except (OSError, ValueError) as error:
        raise _open_error(device, serial.SerialException(str(error))) from None


def _open_error(device: str, error: serial.SerialException) -> KitError:
    code = getattr(error, "errno", None)
    text = str(error)
    if code == errno.EACCES or "Permission denied" in text or "Access is denied" in text:
        fix = (
            " On Linux, add yourself to the dialout group (`sudo usermod -aG dialout $USER`), "
            "then log out and in again."
            if sys.platform.startswith("linux")
            else " Close other programs that use the board and try again."
        )
        return PortPermissionError(f"You are not allowed to open {device}.{fix}")
    if code in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text or "busy" in text.lower():
        return PortBusyError(
            f"{device} is in use by another program. Close the Arduino IDE's Serial Monitor "
            "(or the other notebook or terminal using the board) and try again."
        )
    if code == errno.ENOENT or "No such file" in text or "could not open port" in text.lower():
        return BoardDisconnectedError(
            f"There is no port {device}: the board may have been unplugged or got another "
            "port name. `kit boards` lists what is attached."
        )
    return BoardDisconnectedError(f"{device} could not be opened: {text}")


# The CSR dialog


LOCK_QUESTION = "PERMANENTLY configure and lock"
FAILURES: dict[str, Callable[[str], KitError]] = {
    "No ECCX08 present!": lambda _: NoChipError(
        "The board found no ECCX08 crypto chip. The course needs an MKR WiFi 1010 or Nano "
        "33 IoT; other boards do not have the chip."
    ),
    "Unfortunately you can't proceed without locking it :(": lambda _: ChipNotLockedError(
        "The board stopped because its chip is not locked. Press its reset button, then run "
        "the capture again with locking chosen."
    ),
    "Writing ECCX08 configuration failed!": lambda _: LockFailedError(
        "The chip refused its configuration. Press reset and try once more; if it fails again, "
        "the chip may already have been configured differently (by another tool)."
    ),
    "Locking ECCX08 configuration failed!": lambda _: LockFailedError(
        "The chip could not be locked. Press reset and try once more; if it fails again, ask "
        "the instructor for another board."
    ),
    "Error starting CSR generation!": lambda slot: CsrGenerationError(
        f"The chip could not prepare the key in slot {slot}. If you asked to keep the slot's "
        "key, it may have none: generate a new key. Otherwise try another slot (1-4)."
    ),
    "Error generating CSR!": lambda _: CsrGenerationError(
        "The chip could not sign the CSR. Press reset and capture again."
    ),
}


@dataclass(frozen=True)
class Timeouts:
    """How long to wait, in seconds: nothing here waits forever."""

    first_output: float = 8.0  # from opening the port to the board's first byte
    step: float = 20.0  # between two pieces of output (key generation takes well under 1 s)
    total: float = 120.0


@dataclass(frozen=True)
class CsrCapture:
    """The result of the dialog: the CSR and how it was made."""

    csr: certs.Csr
    chip_serial: str
    slot: int
    new_key: bool
    locked_now: bool
    variant: str  # "example" or "workshop" dialog
    transcript: str = field(repr=False)

    def _repr_html_(self) -> str:
        return self.csr._repr_html_()


def capture_csr(
    port: str | serial.SerialBase,
    *,
    name: str | None = None,
    slot: int = 0,
    lock: bool = False,
    new_key: bool = True,
    subject: Mapping[str, str] | None = None,
    on_output: Callable[[str], None] | None = None,
    timeouts: Timeouts = Timeouts(),
) -> CsrCapture:
    """Answer the CSR sketch's questions and return the CSR it prints.

    `lock=True` is the person's explicit choice to lock an unlocked chip, which is permanent;
    without it an unlocked chip stops the capture with an explanation. The five location and
    organisation fields stay empty unless `subject` gives them (keys C, ST, L, O, OU).
    """
    if name is not None:
        certs.validate_device_name(name)
    if not isinstance(slot, int) or not 0 <= slot <= 4:
        raise CsrGenerationError(f"The key slot must be 0, 1, 2, 3 or 4, not {slot!r}.")
    fields = dict(subject or {})
    for key, value in fields.items():
        if key not in ("C", "ST", "L", "O", "OU"):
            raise DeviceNameError(f"Unknown subject field {key!r}: use C, ST, L, O or OU.")
        if "\n" in value or "\r" in value or len(value) > 64:
            raise DeviceNameError(f"The {key} field must be one line of at most 64 characters.")
    dialog = _Dialog(name, slot, lock, new_key, fields)
    opened = open_port(port) if isinstance(port, str) else port
    try:
        return dialog.run(opened, on_output, timeouts)
    finally:
        if isinstance(port, str):
            opened.close()


def _disconnected(error: Exception) -> BoardDisconnectedError:
    return BoardDisconnectedError(
        "The board disappeared in the middle of the dialog (was the cable pulled, or the reset "
        f"button pressed?): {error}. Plug it in, press reset and run this again."
    )


class _Dialog:
    """The answers for one capture, and the state of the conversation."""

    def __init__(self, name, slot, lock, new_key, fields) -> None:
        self.name, self.slot, self.lock, self.new_key, self.fields = (
            name,
            slot,
            lock,
            new_key,
            fields,
        )
        self.serial_number = ""
        self.locked_now = False
        self.variant = "example"

    def answer(self, prompt: str, default: str) -> str:
        """What to type at a prompt, or an error for a prompt the dialog does not have."""
        if LOCK_QUESTION in prompt:
            if not self.lock:
                # Nothing is sent: the board waits at its question until it is reset.
                raise ChipNotLockedError(
                    "This board's crypto chip is not locked yet, and locking it is PERMANENT: "
                    "it cannot be undone, and the chip keeps that configuration for life. It is "
                    "needed to make a key. Nothing was sent to the board. If you want to lock "
                    "it, press the board's reset button and run again with locking chosen "
                    "(--lock, or the checkbox in the notebook)."
                )
            self.locked_now = True
            return "y"
        for words, key in (
            ("Country Name", "C"),
            ("State or Province Name", "ST"),
            ("Locality Name", "L"),
            ("Organizational Unit Name", "OU"),
            ("Organization Name", "O"),
        ):
            if prompt.startswith(words):
                return self.fields.get(key, "")
        if prompt.startswith(("Common Name", "Device Name")):
            self.variant = "workshop" if prompt.startswith("Device Name") else "example"
            return self.name or ""
        if "slot would you like to use" in prompt:
            return str(self.slot)
        if "generate a new private key" in prompt:
            return "Y" if self.new_key else "n"
        raise UnexpectedOutputError(
            f"The board asked '{prompt} [{default}]', which is not part of the CSR dialog. Is "
            "the CSR sketch (ECCX08CSR) uploaded to this board?"
        )

    def run(self, port: serial.SerialBase, on_output, timeouts: Timeouts) -> CsrCapture:
        received = bytearray()
        answered_at = -1  # offset of the last prompt answered, so each is answered once
        start = last = time.monotonic()
        while True:
            now = time.monotonic()
            if now - start > timeouts.total:
                raise BoardSilentError(
                    f"The dialog took over {timeouts.total:.0f} s; press reset and try again."
                )
            limit = timeouts.step if received else timeouts.first_output
            if now - last > limit:
                raise self._silence(received, limit)
            try:
                chunk = port.read(1)  # waits up to the port timeout (0.1 s)
                # Then take everything already there, so a caller sees whole lines at once.
                while chunk and port.in_waiting:
                    chunk += port.read(port.in_waiting)
            except (serial.SerialException, OSError) as error:
                raise _disconnected(error) from None
            if not chunk:
                continue
            last = time.monotonic()
            received += chunk
            if on_output:
                on_output(chunk.decode("utf-8", errors="replace"))
            text = received.decode("utf-8", errors="replace")
            self._check_lines(text)
            end = text.find("-----END CERTIFICATE REQUEST-----")
            if end >= 0 and "\n" in text[end:]:  # the whole END line has arrived
                return self._finish(text)
            line_start = text.rfind("\n") + 1
            partial = text[line_start:]
            match = re.fullmatch(r"(?P<prompt>.*) \[(?P<default>.*)\]: ", partial)
            if match and line_start > answered_at:
                answered_at = line_start
                reply = self.answer(match.group("prompt"), match.group("default"))
                try:
                    port.write(reply.encode("utf-8") + b"\r\n")
                    port.flush()
                except (serial.SerialException, OSError) as error:
                    raise _disconnected(error) from None

    def _check_lines(self, text: str) -> None:
        for line in text.replace("\r", "").split("\n")[:-1]:
            if line.startswith("ECCX08 Serial Number = "):
                self.serial_number = line.split("=", 1)[1].strip()
            if line in FAILURES:
                raise FAILURES[line](str(self.slot))

    def _silence(self, received: bytes, limit: float) -> BoardSilentError:
        if not received:
            return BoardSilentError(
                f"The board sent nothing for {limit:.0f} s. Is the CSR sketch (ECCX08CSR) "
                "uploaded? If the dialog already started earlier (another program opened the "
                "port), press the board's reset button once and run this again."
            )
        tail = received.decode("utf-8", errors="replace").strip().splitlines()[-1:]
        return BoardSilentError(
            f"The board stopped talking for {limit:.0f} s after '{tail[0] if tail else ''}'. "
            "Press its reset button and run this again."
        )

    def _finish(self, text: str) -> CsrCapture:
        start = text.find("-----BEGIN CERTIFICATE REQUEST-----")
        end = text.find("-----END CERTIFICATE REQUEST-----") + len(
            "-----END CERTIFICATE REQUEST-----"
        )
        try:
            csr = certs.load_csr(text[max(start, 0) : end])
        except KitError as error:
            raise GarbledCsrError(
                f"The CSR arrived damaged ({error}) Press the board's reset button and capture "
                "again; if it keeps happening, try another USB cable or port."
            ) from None
        expected = self.name or self.serial_number
        if expected and csr.common_name != expected:
            raise GarbledCsrError(
                f"The board made a CSR for '{csr.common_name}', not for '{expected}'. Press reset "
                "and capture again."
            )
        return CsrCapture(
            csr=csr,
            chip_serial=self.serial_number,
            slot=self.slot,
            new_key=self.new_key,
            locked_now=self.locked_now,
            variant=self.variant,
            transcript=text,
        )
