"""The CSR sketch's serial dialog: answer its questions and capture the CSR it prints.

The same code talks to a real MKR WiFi 1010 on /dev/ttyACM0 or COM3 and to a virtual board on a
pty or `sim://<name>`: a virtual board is a port like any other. Finding and opening the port is
kit.board_ports; its names stay importable from here.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import serial

from kit import certs
from kit.board_ports import (
    BAUD,
    BoardPort,
    BoardProvider,
    ResetAdvice,
    choose_board,
    find_boards,
    open_port,
    providers,
    recognise,
    reset_advice,
)
from kit.errors import (
    BoardDisconnectedError,
    BoardSilentError,
    ChipNotLockedError,
    CsrGenerationError,
    DeviceNameError,
    GarbledCsrError,
    KitError,
    LockFailedError,
    NoChipError,
    UnexpectedOutputError,
)

# Finding and opening boards lives in kit.board_ports; callers may keep using kit.board.
__all__ = [
    "BAUD",
    "BoardPort",
    "BoardProvider",
    "CsrCapture",
    "ResetAdvice",
    "Timeouts",
    "capture_csr",
    "choose_board",
    "find_boards",
    "open_port",
    "providers",
    "recognise",
    "reset_advice",
]

LOCK_QUESTION = "PERMANENTLY configure and lock"
# What the sketch prints when the lock question is answered with anything but "y", then stops.
NOT_LOCKED = "Unfortunately you can't proceed without locking it :("
# Each line the sketch prints before it stops at a failure, and the error it means; `halted` is
# what restarts the sketch on this board (ResetAdvice.halted).
FAILURES: dict[str, Callable[[int, str], KitError]] = {
    "No ECCX08 present!": lambda slot, halted: NoChipError(
        "The board found no ECCX08 crypto chip. The course needs an MKR WiFi 1010 or Nano "
        "33 IoT; other boards do not have the chip."
    ),
    "Writing ECCX08 configuration failed!": lambda slot, halted: LockFailedError(
        f"The chip refused its configuration. {halted} the capture again to try once more; if "
        "it fails again, the chip may already have been configured differently (by another "
        "tool)."
    ),
    "Locking ECCX08 configuration failed!": lambda slot, halted: LockFailedError(
        f"The chip could not be locked. {halted} the capture again to try once more; if it "
        "fails again, ask the instructor."
    ),
    "Error starting CSR generation!": lambda slot, halted: CsrGenerationError(
        f"The chip could not prepare the key in slot {slot}. If you asked to keep the slot's "
        "key, it may have none: generate a new key. Otherwise try another slot (1-4). "
        f"{halted} the capture again."
    ),
    "Error generating CSR!": lambda slot, halted: CsrGenerationError(
        f"The chip could not sign the CSR. {halted} the capture again."
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
    # pyserial keeps the path or URL a port was opened with; it says what restarts the board.
    device = port if isinstance(port, str) else str(getattr(port, "port", "") or "")
    dialog = _Dialog(name, slot, lock, new_key, fields, device)
    opened = open_port(port) if isinstance(port, str) else port
    try:
        return dialog.run(opened, on_output, timeouts)
    finally:
        if isinstance(port, str):
            opened.close()


def _disconnected(error: Exception, advice: ResetAdvice) -> BoardDisconnectedError:
    return BoardDisconnectedError(
        f"The board's port went away in the middle of the dialog ({error}). "
        f"{advice.reconnect} this again."
    )


class _Dialog:
    """The answers for one capture, and the state of the conversation."""

    def __init__(
        self,
        name: str | None,
        slot: int,
        lock: bool,
        new_key: bool,
        fields: dict[str, str],
        device: str = "",
    ) -> None:
        self.name, self.slot, self.lock, self.new_key, self.fields = (
            name,
            slot,
            lock,
            new_key,
            fields,
        )
        self.device = device
        self.serial_number = ""
        self.locked_now = False
        self.declined_lock = False
        self.variant = "example"

    @functools.cached_property
    def advice(self) -> ResetAdvice:
        """What restarts this board's sketch (looked up only when a message needs it)."""
        return reset_advice(self.device)

    def answer(self, prompt: str, default: str) -> str:
        """What to type at a prompt, or an error for a prompt the dialog does not have."""
        if LOCK_QUESTION in prompt:
            if not self.lock:
                # "N", the sketch's own default: only "y" locks. The sketch then says it cannot
                # go on and stops, as it does for a person at the Serial Monitor, instead of
                # waiting at its question until someone resets the board.
                self.declined_lock = True
                return "N"
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

    def run(
        self,
        port: serial.SerialBase,
        on_output: Callable[[str], None] | None,
        timeouts: Timeouts,
    ) -> CsrCapture:
        received = bytearray()
        answered_at = -1  # offset of the last prompt answered, so each is answered once
        start = last = time.monotonic()
        while True:
            now = time.monotonic()
            if now - start > timeouts.total:
                raise BoardSilentError(
                    f"The dialog took over {timeouts.total:.0f} s. {self.advice.stuck} this again."
                )
            limit = timeouts.step if received else timeouts.first_output
            if now - last > limit:
                raise self._silence(received, limit)
            try:
                chunk = port.read(1)  # waits up to the port timeout (0.1 s)
                # Then take everything already there, so a caller sees whole lines at once.
                while chunk and port.in_waiting:  # type: ignore[attr-defined]  # every port class has it
                    chunk += port.read(port.in_waiting)  # type: ignore[attr-defined]  # SerialBase's stub lacks it
            except (serial.SerialException, OSError) as error:
                raise _disconnected(error, self.advice) from None
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
                    raise _disconnected(error, self.advice) from None

    def _check_lines(self, text: str) -> None:
        for line in text.replace("\r", "").split("\n")[:-1]:
            if line.startswith("ECCX08 Serial Number = "):
                self.serial_number = line.split("=", 1)[1].strip()
            if line == NOT_LOCKED:
                raise self._not_locked()
            if line in FAILURES:
                raise FAILURES[line](self.slot, self.advice.halted)

    def _not_locked(self) -> ChipNotLockedError:
        answered = (
            'and locking was not chosen, so the kit answered "N" and the board stopped'
            if self.declined_lock
            else "and the board stopped at the lock question"
        )
        return ChipNotLockedError(
            "This board's crypto chip is not locked yet. Locking is PERMANENT (it cannot be "
            f"undone) and is needed once to make a key, {answered}. {self.advice.halted} the "
            "capture again with locking chosen (`kit csr --lock`, or the checkbox in notebook "
            "01) to lock it."
        )

    def _silence(self, received: bytes | bytearray, limit: float) -> BoardSilentError:
        if not received:
            return BoardSilentError(
                f"The board sent nothing for {limit:.0f} s: is the CSR sketch (ECCX08CSR) "
                "uploaded? If it is, its dialog started earlier (another program opened the "
                f"port) and waits in the middle. {self.advice.stuck} this again."
            )
        tail = received.decode("utf-8", errors="replace").strip().splitlines()[-1:]
        return BoardSilentError(
            f"The board stopped talking for {limit:.0f} s after '{tail[0] if tail else ''}'. "
            f"{self.advice.stuck} this again."
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
                f"The CSR arrived damaged ({error}) {self.advice.reconnect} the capture again."
            ) from None
        expected = self.name or self.serial_number
        if expected and csr.common_name != expected:
            raise GarbledCsrError(
                f"The board made a CSR for '{csr.common_name}', not for '{expected}'. "
                f"{self.advice.halted} the capture again."
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
