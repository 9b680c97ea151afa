"""Boards on serial ports: which ports have an Arduino on them, which one to use, and opening it.

The same code finds a real MKR WiFi 1010 on /dev/ttyACM0 (Linux), /dev/cu.usbmodem1101 (macOS)
or COM3 (Windows), always by the name the system gives it, and a virtual board on a pty or
`sim://<name>`: boards that are not USB ports (the virtual board) come from providers, loaded
through an entry point when boards are listed or opened.
"""

from __future__ import annotations

import copy
import errno
import functools
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

import serial
from serial.tools import list_ports

from kit.errors import (
    BoardDisconnectedError,
    BootloaderModeError,
    KitError,
    NoBoardError,
    PortBusyError,
    PortPermissionError,
    SeveralBoardsError,
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

    device: str  # a path (/dev/ttyACM0, /dev/cu.usbmodem1101, COM3) or a URL (sim://default)
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
        model = f"Arduino {OTHER_ARDUINOS.get(pid, 'board (unrecognised model)')}"  # type: ignore[arg-type]  # a None pid finds no entry: the default
        return BoardPort(device, model, "unsupported", "sketch", usb, description)
    return BoardPort(device, description or "unknown serial device", "unknown", "sketch", usb)


def find_boards(include_virtual: bool = True) -> list[BoardPort]:
    """Every serial port with what is on it, real boards first, then running virtual boards."""
    found = [recognise(port) for port in system_ports(list_ports.comports())]
    order = {"supported": 0, "unsupported": 1, "unknown": 2}
    found.sort(key=lambda b: (order[b.kind], _natural(b.device)))
    if include_virtual:
        for provider in providers():
            found += provider.ports()
    return found


def system_ports(records: Iterable[Any], platform: str = sys.platform) -> list[Any]:
    """The port records to offer, each once, by the name to open it with on `platform`.

    macOS makes two files for each USB serial port: opening /dev/tty.X waits for the modem's
    carrier detect (unless the program asks not to), and /dev/cu.X (the callout device) never does.
    pyserial lists only cu.X today; a record of tty.X (an older lister, a name typed) is kept
    only when its cu.X twin is missing, renamed to it.
    """
    records = list(records)
    if platform != "darwin":
        return records
    listed = {record.device for record in records}
    kept: list[Any] = []
    for record in records:
        device = callout_device(record.device, platform)
        if device != record.device:
            if device in listed:
                continue  # the cu.X record is listed as well: it is the one offered
            record = copy.copy(record)  # the caller's record keeps its name
            record.device, record.name = device, device.rsplit("/", 1)[-1]
            listed.add(device)
        kept.append(record)
    return kept


def callout_device(device: str, platform: str = sys.platform) -> str:
    """The name to open a port by on `platform`: on macOS /dev/cu.X for /dev/tty.X."""
    if platform == "darwin" and device.startswith("/dev/tty."):
        return "/dev/cu." + device.removeprefix("/dev/tty.")
    return device


def example_port(platform: str = sys.platform) -> str:
    """A board's port as this system names it, for help texts and messages."""
    if platform == "win32":
        return "COM3"
    if platform == "darwin":
        return "/dev/cu.usbmodem1101"
    return "/dev/ttyACM0"


def _natural(device: str) -> list[tuple[int, str]]:
    """A sort key that puts COM3 before COM10 and ttyACM2 before ttyACM10."""
    return [
        (int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", device)
    ]


@dataclass(frozen=True)
class ResetAdvice:
    """What a student does where a real board needs its reset button, in a board's messages.

    Each is the start of a sentence that a message finishes with "... this again" (or "... the
    capture again ..."): what to do before running the dialog again.
    """

    # The sketch printed a failure (or the lock was declined) and stopped, waiting for reset.
    halted: str = "Press the board's reset button, then run"
    # The sketch is silent: it waits in the middle of a dialog another program started.
    stuck: str = "Press the board's reset button once, then run"
    # The port went away, or bytes were lost on the way.
    reconnect: str = (
        "Check the USB cable (or try another one), press the board's reset button, then run"
    )


USB_BOARD = ResetAdvice()


@dataclass(frozen=True)
class BoardProvider:
    """Boards that are not USB serial ports (the virtual board), plugged in by an entry point.

    A provider's module registers its URL scheme with pyserial when it is imported.
    """

    scheme: str  # its ports are URLs <scheme>://...
    ports: Callable[[], list[BoardPort]]  # the ports it has now
    check: Callable[[str], None]  # raise a KitError saying how to start the board behind a URL
    owns: Callable[[str], bool]  # whether a port path or URL leads to one of its boards
    reset_advice: ResetAdvice  # what does for its boards what a real board's reset button does


PROVIDER_GROUP = "kit.board_providers"


@functools.cache
def providers() -> tuple[BoardProvider, ...]:
    """The installed board providers, loaded the first time boards are listed or opened."""
    return tuple(entry.load() for entry in metadata.entry_points(group=PROVIDER_GROUP))


def reset_advice(device: str) -> ResetAdvice:
    """What takes the place of the reset button for the board on `device` (a path or URL)."""
    for provider in providers():
        if provider.owns(device):
            return provider.reset_advice
    return USB_BOARD


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
        'course.use("virtual") in notebook 00 (`kit use virtual` in a terminal).'
    )


def open_port(device: str, timeout: float = 0.1) -> serial.SerialBase:
    """Open a board's port by path or URL (socket://, sim://), with errors that say what to do."""
    is_url = "://" in device
    for provider in providers() if is_url else ():
        if device.startswith(f"{provider.scheme}://"):
            provider.check(device)
    if not is_url:
        device = callout_device(device)  # a macOS tty.X name, from an IDE's menu or typed
    try:
        if is_url:
            return serial.serial_for_url(device, baudrate=BAUD, timeout=timeout)
        return serial.Serial(device, baudrate=BAUD, timeout=timeout, exclusive=True)
    except serial.SerialException as error:
        raise _open_error(device, error) from None
    except (OSError, ValueError) as error:
        raise _open_error(device, serial.SerialException(str(error))) from None


def _open_error(
    device: str, error: serial.SerialException, platform: str = sys.platform
) -> KitError:
    """The kit's message for a port that would not open, from pyserial's error."""
    code = getattr(error, "errno", None)
    text = str(error)
    # Windows opens a COM port for one program at a time and refuses the next with "Access is
    # denied": another program has the board, nobody lacks a permission.
    if platform == "win32" and "Access is denied" in text:
        return _busy(device)
    if code == errno.EACCES or "Permission denied" in text or "Access is denied" in text:
        fix = (
            " On Linux, add yourself to the dialout group (`sudo usermod -aG dialout $USER`), "
            "then log out and in again."
            if platform.startswith("linux")
            else " Close other programs that use the board and try again."
        )
        return PortPermissionError(f"You are not allowed to open {device}.{fix}")
    if code in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text or "busy" in text.lower():
        return _busy(device)
    if code == errno.ENOENT or "No such file" in text or "could not open port" in text.lower():
        return BoardDisconnectedError(
            f"There is no port {device}: the board is unplugged, or has another port name now. "
            'Plug it in, then run `kit use auto` in a terminal (course.use("auto") in notebook '
            "00) to find it again."
        )
    return BoardDisconnectedError(f"{device} could not be opened: {text}")


def _busy(device: str) -> PortBusyError:
    """The message for a port another program holds."""
    return PortBusyError(
        f"{device} is in use by another program. Close the Arduino IDE's Serial Monitor "
        "(or the other notebook or terminal using the board) and try again."
    )
