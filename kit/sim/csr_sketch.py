"""The virtual CSR sketch: sketches/ECCX08CSR/ECCX08CSR.ino, line for line, in Python.

It prints the same prompts, defaults, echoes and messages, byte for byte, so the kit's serial
code cannot tell it from a real board. It can also fail the ways a real board fails (no chip,
key generation, CSR generation, locking), for the tests and for the course.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kit.sim.eccx08 import VirtualEccx08
from kit.sim.eccx08_csr import chip_pem
from kit.sim.serial_port import VirtualSerialPort

Variant = Literal["example", "workshop"]
Failure = Literal["no-chip", "keygen", "csr", "lock"]
VARIANTS: tuple[Variant, ...] = ("example", "workshop")
FAILURES: tuple[Failure, ...] = ("no-chip", "keygen", "csr", "lock")

LOCK_PROMPT = (
    "The ECCX08 on your board is not locked, would you like to PERMANENTLY configure and lock "
    "it now? (y/N)"
)
HELLO = (
    "Hi there, in order to generate a new CSR for your board, we'll need the following "
    "information ..."
)


class Reset(Exception):
    """The reset button was pressed: the sketch starts again from setup()."""


class Halt(Exception):
    """The sketch reached `while (1);` (done or failed) and waits for a reset."""


@dataclass
class SketchSettings:
    """How the virtual CSR sketch behaves."""

    variant: Variant = "example"
    fail: Failure | None = None


class CsrSketch:
    """One run of the CSR sketch against a virtual chip and port."""

    def __init__(
        self,
        port: VirtualSerialPort,
        chip: VirtualEccx08,
        settings: SketchSettings,
        reset: threading.Event,
        log: Callable[[bytes], None] = lambda data: None,
    ) -> None:
        self.port, self.chip, self.settings = port, chip, settings
        self._reset, self._log = reset, log
        self._pending = b""

    # What the sketch calls on Serial.

    def print(self, text: str | bytes) -> None:
        data = text.encode("utf-8") if isinstance(text, str) else text
        self._log(data)
        self.port.write(data)

    def println(self, text: str | bytes = "") -> None:
        self.print((text.encode("utf-8") if isinstance(text, str) else text) + b"\r\n")

    def read_line(self) -> bytes:
        """readLine(): bytes up to LF, ignoring CR; blocks like the sketch does."""
        line = b""
        while True:
            if not self._pending:
                if self._reset.is_set():
                    raise Reset
                self._pending = self.port.read(timeout=0.05)
                continue
            char, self._pending = self._pending[:1], self._pending[1:]
            if char == b"\r":
                continue
            if char == b"\n":
                return line
            line += char

    def prompt(self, prompt: str, default: str) -> bytes:
        """promptAndReadLine(): print the prompt with its default, read, echo."""
        self.print(f"{prompt} [{default}]: ")
        answer = self.read_line() or default.encode("utf-8")
        self.println(answer)
        return answer

    def halt(self, message: str | None = None) -> None:
        if message:
            self.println(message)
        raise Halt

    # setup(), as in the .ino.

    def setup(self) -> None:
        self.port.wait_for_host()
        fail = self.settings.fail
        if fail == "no-chip":
            self.halt("No ECCX08 present!")
        serial = self.chip.serial_number
        self.print("ECCX08 Serial Number = ")
        self.println(serial)
        self.println()
        if not self.chip.locked:
            if not self.prompt(LOCK_PROMPT, "N").lower().startswith(b"y"):
                self.halt("Unfortunately you can't proceed without locking it :(")
            if fail == "lock":
                self.halt("Locking ECCX08 configuration failed!")
            self.chip.write_configuration_and_lock()
            self.println("ECCX08 locked successfully")
            self.println()
        self.println(HELLO)
        self.println()
        fields: dict[str, bytes] = {}
        if self.settings.variant == "example":
            fields["C"] = self.prompt("Country Name (2 letter code)", "")
            fields["ST"] = self.prompt("State or Province Name (full name)", "")
            fields["L"] = self.prompt("Locality Name (eg, city)", "")
            fields["O"] = self.prompt("Organization Name (eg, company)", "")
            fields["OU"] = self.prompt("Organizational Unit Name (eg, section)", "")
            fields["CN"] = self.prompt("Common Name (e.g. server FQDN or YOUR name)", serial)
            slot_text = self.prompt("What slot would you like to use? (0 - 4)", "0")
        else:
            fields["CN"] = self.prompt("Device Name", serial)
            slot_text = self.prompt("Which slot would you like to use? (0 - 4)", "0")
        new_key = self.prompt("Would you like to generate a new private key? (Y/n)", "Y")
        self.println()
        slot = to_int(slot_text)
        if fail == "keygen" or not self._begin(slot, new_key.lower().startswith(b"y")):
            self.halt("Error starting CSR generation!")
        if fail == "csr":
            self.halt("Error generating CSR!")
        text = {name: value.decode("latin-1") for name, value in fields.items()}
        csr = chip_pem(self.chip.csr(slot, text))
        self.println("Here's your CSR, enjoy!")
        self.println()
        self.println(csr)
        raise Halt  # loop() does nothing

    def _begin(self, slot: int, new_key: bool) -> bool:
        """ECCX08CSR.begin(): make a key (or use the slot's key); false on failure."""
        if not 0 <= slot <= 4:
            return False
        if new_key:
            self.chip.generate_key(slot)
            return True
        return self.chip.has_key(slot)


def to_int(text: bytes) -> int:
    """Arduino String.toInt(): the leading integer (after spaces), 0 if there is none."""
    text = text.lstrip()
    digits = b""
    for i, char in enumerate(text):
        if chr(char).isdigit() or (i == 0 and char in b"-+"):
            digits += bytes([char])
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0
