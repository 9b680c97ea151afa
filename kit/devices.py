"""The device record: everything known about one device, in KIT_HOME/devices/<thing>/.

The notebooks and the CLI share it: a restarted kernel, the next notebook or `kit config-h`
find the current device there. The folder holds the CSR, the certificate, the CA that signs the
broker's certificate, and device.json (cloud, broker, slot, board, chip serial, dates).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from kit import settings
from kit.errors import DamagedFileError, DeviceNotFoundError
from kit.names import validate_device_name
from kit.places import damaged, kit_home, read_json, read_state, set_aside, write_private


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
        return self._file("certificate.pem")

    @property
    def ca_pem(self) -> str:
        return self._file("ca.pem")

    @property
    def csr_pem(self) -> str:
        return self._file("csr.pem")

    def _file(self, name: str) -> str:
        """One of the record's PEM files, or DamagedFileError saying how to get it back."""
        path = self.folder / name
        text = read_state(path, _fix(self.thing), self.folder)
        if text is None:
            problem = f"the record of {self.thing} has no {name} (deleted or not copied)"
            raise damaged(path, problem, _fix(self.thing), self.folder)
        return text


_FIELDS = {f.name: f for f in fields(DeviceRecord)}


def _fix(thing: str) -> str:
    """How to get a damaged record back: register the same CSR again."""
    return (
        f"Register the device again (notebook 02, or `kit register` with its CSR, such as "
        f"{device_dir(thing) / 'csr.pem'}): the cloud gives the same certificate back, and the "
        "kit keeps the damaged record beside the new one, renamed *.damaged-<time>"
    )


def device_dir(thing: str) -> Path:
    """The record's folder; the name is checked first, so it cannot point outside devices/."""
    return kit_home() / "devices" / validate_device_name(thing).name


def save(record: DeviceRecord, csr_pem: str, certificate_pem: str, ca_pem: str) -> DeviceRecord:
    """Write the record and its files, and make it the current device."""
    folder = record.folder
    if folder.exists():
        try:
            load(record.thing).certificate_pem  # noqa: B018 - reading is the check
        except DamagedFileError:
            set_aside(folder)  # keep what was there: it may hold the only copy of something
    write_private(folder / "csr.pem", csr_pem)
    write_private(folder / "certificate.pem", certificate_pem)
    write_private(folder / "ca.pem", ca_pem)
    write_private(folder / "device.json", json.dumps(asdict(record), indent=2) + "\n")
    set_current(record.thing)
    return record


def load(thing: str | None = None) -> DeviceRecord:
    """The record of `thing`, or of the current device."""
    thing = thing or current_name()
    folder = device_dir(thing)
    path = folder / "device.json"
    values = read_json(path, _fix(thing), folder)
    if values is None:
        raise DeviceNotFoundError(
            f"No device called '{thing}' is registered on this computer. Notebooks 01 and 02 "
            "register one (`kit things` lists them, `kit register` registers one)."
        )
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        problem = (
            f"it has fields this kit does not know ({', '.join(unknown)}): edited by hand, or "
            "written by a newer kit"
        )
        raise damaged(path, problem, _fix(thing), folder)
    for name, spec in _FIELDS.items():
        wanted = int if spec.type == "int" else str
        required = spec.default is MISSING and spec.default_factory is MISSING
        if name not in values and not required:
            continue
        value = values.get(name)
        if not isinstance(value, wanted) or isinstance(value, bool):
            said = (
                "missing"
                if name not in values
                else f"not {'a number' if wanted is int else 'text'}"
            )
            raise damaged(path, f"its '{name}' is {said}", _fix(thing), folder)
    if values["thing"] != thing:
        problem = f"it is the record of '{values['thing']}' (copied from another device?)"
        raise damaged(path, problem, _fix(thing), folder)
    return DeviceRecord(**values)


def all_records() -> list[DeviceRecord]:
    """Every device registered from this computer."""
    root = kit_home() / "devices"
    # Folders set aside by a repair (name.damaged-<time>) are not device names: skip them.
    names = sorted(p.parent.name for p in root.glob("*/device.json") if "." not in p.parent.name)
    return [load(name) for name in names]


def forget(thing: str) -> None:
    """Delete a device's record (after unregistering it)."""
    folder = device_dir(thing)
    for path in folder.glob("*"):
        path.unlink()
    if folder.exists():
        folder.rmdir()
    if settings.current_device() == thing:
        settings.set_current_device(None)


def current_name() -> str:
    """The current device's thing name."""
    name = settings.current_device()
    if not name:
        raise DeviceNotFoundError(
            "There is no current device yet. Capture a CSR and register it first (notebooks "
            "01 and 02, or `kit csr` and `kit register`)."
        )
    return name


def set_current(thing: str) -> None:
    settings.set_current_device(thing)
