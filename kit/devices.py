"""The device record: everything known about one device, in KIT_HOME/devices/<thing>/.

The notebooks and the CLI share it: a restarted kernel, the next notebook or `kit config-h`
find the current device there. The folder holds the CSR, the certificate, the CA that signs the
broker's certificate, and device.json (cloud, broker, slot, board, chip serial, dates).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kit.errors import KitError
from kit.places import kit_home, write_private


class DeviceNotFoundError(KitError):
    """No record for the device asked for."""

    title = "Device problem"


@dataclass(frozen=True)
class DeviceRecord:
    """One registered device, as the kit remembers it."""

    thing: str
    cloud: str  # "local" or "aws"
    broker_host: str
    broker_port: int
    certificate_id: str
    slot: int = 0
    board: str = ""  # the port or sim:// URL it was captured from
    chip_serial: str = ""
    registered_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    region: str = ""
    profile: str = ""

    @property
    def folder(self) -> Path:
        return device_dir(self.thing)

    @property
    def certificate_pem(self) -> str:
        return (self.folder / "certificate.pem").read_text(encoding="utf-8")

    @property
    def ca_pem(self) -> str:
        return (self.folder / "ca.pem").read_text(encoding="utf-8")

    @property
    def csr_pem(self) -> str:
        return (self.folder / "csr.pem").read_text(encoding="utf-8")


def device_dir(thing: str) -> Path:
    return kit_home() / "devices" / thing


def save(record: DeviceRecord, csr_pem: str, certificate_pem: str, ca_pem: str) -> DeviceRecord:
    """Write the record and its files, and make it the current device."""
    folder = record.folder
    write_private(folder / "csr.pem", csr_pem)
    write_private(folder / "certificate.pem", certificate_pem)
    write_private(folder / "ca.pem", ca_pem)
    write_private(folder / "device.json", json.dumps(asdict(record), indent=2) + "\n")
    set_current(record.thing)
    return record


def load(thing: str | None = None) -> DeviceRecord:
    """The record of `thing`, or of the current device."""
    thing = thing or current_name()
    path = device_dir(thing) / "device.json"
    try:
        return DeviceRecord(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise DeviceNotFoundError(
            f"No device called '{thing}' is registered on this computer. `kit things` lists "
            "them; `kit register` registers one."
        ) from None


def all_records() -> list[DeviceRecord]:
    """Every device registered from this computer."""
    root = kit_home() / "devices"
    return (
        [load(p.parent.name) for p in sorted(root.glob("*/device.json"))] if root.exists() else []
    )


def forget(thing: str) -> None:
    """Delete a device's record (after unregistering it)."""
    folder = device_dir(thing)
    for path in folder.glob("*"):
        path.unlink()
    if folder.exists():
        folder.rmdir()
    if _settings().get("current_device") == thing:
        _write_settings({**_settings(), "current_device": None})


def current_name() -> str:
    """The current device's thing name."""
    name = _settings().get("current_device")
    if not name:
        raise DeviceNotFoundError(
            "There is no current device yet. Capture a CSR and register it first (notebooks "
            "01 and 02, or `kit csr` and `kit register`)."
        )
    return name


def set_current(thing: str) -> None:
    _write_settings({**_settings(), "current_device": thing})


def _settings() -> dict:
    path = kit_home() / "settings.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def _write_settings(values: dict) -> None:
    write_private(kit_home() / "settings.json", json.dumps(values, indent=2) + "\n")
