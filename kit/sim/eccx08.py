"""A virtual ECCX08 (ATECC608) crypto chip: a serial number, five key slots and a permanent lock.

The state lives in a folder (in KIT_HOME, per virtual board), so a virtual board keeps its
identity across restarts. Private keys are generated inside the chip and never handed out: the
public API gives public keys, signatures and CSRs; only the virtual firmware's TLS (inside
`kit.sim`) reads a slot key, through `_private_key`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kit.errors import ChipError
from kit.places import write_private
from kit.sim.eccx08_csr import chip_csr

SLOTS = range(5)


@dataclass(frozen=True)
class ChipTiming:
    """How long chip operations take, in seconds (ATECC608A datasheet typical times)."""

    keygen: float = 0.059
    sign: float = 0.047
    lock: float = 0.032
    write_config: float = 0.040

    @classmethod
    def instant(cls) -> ChipTiming:
        """No delays: for unit tests."""
        return cls(0.0, 0.0, 0.0, 0.0)


class VirtualEccx08:
    """One virtual chip whose state is kept in `folder`."""

    def __init__(self, folder: Path, timing: ChipTiming | None = None) -> None:
        self.folder = Path(folder)
        self.timing = timing or ChipTiming()
        self.busy_seconds = 0.0  # time spent "inside the chip", for the benchmark
        state = self.folder / "chip.json"
        if not state.exists():
            self._state: dict[str, Any] = {"serial": new_serial_number(), "locked": False}
            self._save()
        else:
            self._state = json.loads(state.read_text(encoding="utf-8"))

    @property
    def serial_number(self) -> str:
        """The 18-hex-digit serial number, as ECCX08.serialNumber() prints it."""
        return cast(str, self._state["serial"])

    @property
    def locked(self) -> bool:
        """Whether the configuration is locked (permanent on a real chip)."""
        return bool(self._state["locked"])

    def write_configuration_and_lock(self) -> None:
        """Write the default TLS configuration and lock it; there is no way back."""
        self._wait(self.timing.write_config)
        self._wait(self.timing.lock)
        self._state["locked"] = True
        self._save()

    def generate_key(self, slot: int) -> ec.EllipticCurvePublicKey:
        """Make a new private key in `slot` (replacing any old one); return its public key."""
        self._check_slot(slot)
        if not self.locked:
            raise ChipError("The chip is not locked, so it cannot make keys yet.")
        self._wait(self.timing.keygen)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        write_private(self._slot_file(slot), pem)
        return key.public_key()

    def public_key(self, slot: int) -> ec.EllipticCurvePublicKey:
        """The public key of the private key in `slot`."""
        return self._private_key(slot).public_key()

    def has_key(self, slot: int) -> bool:
        """Whether `slot` holds a key."""
        self._check_slot(slot)
        return self._slot_file(slot).exists()

    def csr(self, slot: int, fields: Mapping[str, str]) -> bytes:
        """A DER CSR signed by the slot key, encoded as the ECCX08 library encodes it."""
        key = self._private_key(slot)
        self._wait(self.timing.sign)
        return chip_csr(key, fields)

    def factory_reset(self) -> None:
        """Make the chip factory-new: unlocked, no keys (the serial number is burned in)."""
        for slot in SLOTS:
            self._slot_file(slot).unlink(missing_ok=True)
        self._state["locked"] = False
        self._save()

    def _private_key(self, slot: int) -> ec.EllipticCurvePrivateKey:
        """The slot's private key: for the virtual firmware's TLS only, never for display."""
        self._check_slot(slot)
        if not self.locked:
            raise ChipError("The chip is not locked, so its key slots cannot be used yet.")
        try:
            pem = self._slot_file(slot).read_bytes()
        except FileNotFoundError:
            raise ChipError(f"Slot {slot} holds no key yet: generate one first.") from None
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def _check_slot(self, slot: int) -> None:
        if slot not in SLOTS:
            raise ChipError(f"Slot {slot} does not exist: the chip has slots 0 to 4.")

    def _slot_file(self, slot: int) -> Path:
        return self.folder / f"slot{slot}.key"

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
        self.busy_seconds += seconds

    def _save(self) -> None:
        write_private(self.folder / "chip.json", json.dumps(self._state) + "\n")


def new_serial_number() -> str:
    """A serial number shaped like a real ATECC608's: 0123, twelve random hex digits, EE."""
    return "0123" + secrets.token_hex(6).upper() + "EE"
