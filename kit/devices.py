"""The device record: everything known about one device, in KIT_HOME/devices/<thing>/.

The notebooks and the CLI share it: a restarted kernel, the next notebook or `kit config-h`
find the current device there. The folder holds the CSR, the certificate, the CA that signs the
broker's certificate, and device.json (cloud, broker, slot, board, chip serial, dates).

Windows and macOS do not tell 'Board1' from 'board1' in a folder name, so two names that differ
only in case would share one folder there: the kit refuses to save the second, and never reads
or deletes one device's folder under the other's name.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from kit import settings
from kit.errors import DamagedFileError, DeviceNameError, DeviceNotFoundError
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


def _record_names() -> list[str]:
    """The names of the record folders, as the file system spells them."""
    root = kit_home() / "devices"
    if not root.is_dir():
        return []
    # Folders set aside by a repair (name.damaged-<time>) are not device names: skip them.
    return sorted(p.name for p in root.iterdir() if p.is_dir() and "." not in p.name)


def case_twins(thing: str, names: list[str] | None = None) -> list[str]:
    """Recorded names (or `names`) that differ from `thing` only in upper and lower case."""
    names = _record_names() if names is None else names
    return [n for n in names if n != thing and n.lower() == thing.lower()]


def check_case(thing: str) -> None:
    """Refuse a name whose record would share a folder with another's on Windows and macOS."""
    twins = case_twins(thing)
    if twins:
        other = twins[0]
        raise DeviceNameError(
            f"The device name '{thing}' differs from '{other}', a device already registered on "
            "this computer, only in upper and lower case: on Windows and macOS both would share "
            f"one folder. Give this device a name that differs by more than case, or remove "
            f"'{other}' first (course.unregister('{other}'), or `kit unregister {other}`)."
        )


def save(record: DeviceRecord, csr_pem: str, certificate_pem: str, ca_pem: str) -> DeviceRecord:
    """Write the record and its files, and make it the current device."""
    check_case(record.thing)  # before anything is set aside: the folder may be the other's
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
    names = _record_names()
    twins = case_twins(thing, names)
    if twins and thing not in names:  # on Windows and macOS the folder is the twin's
        raise DeviceNotFoundError(
            f"No device called '{thing}' is registered on this computer, but '{twins[0]}' is: "
            f"the names differ only in upper and lower case. Use '{twins[0]}' "
            "(course.look_inside() shows the current device; `kit things` lists them all)."
        )
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
    # Folders set aside by a repair have a '.', and a record an older kit made under a name
    # this kit refuses (such as one with ':') cannot be read: both are skipped.
    names = [n for n in _record_names() if os.path.lexists(root / n / "device.json")]
    return [load(name) for name in names if _valid(name)]


def _valid(name: str) -> bool:
    """Whether `name` is a device name this kit accepts."""
    try:
        validate_device_name(name)
    except DeviceNameError:
        return False
    return True


def forget(thing: str) -> None:
    """Delete a device's record (after unregistering it)."""
    folder = device_dir(thing)
    if thing in _record_names():  # on Windows and macOS 'Board1' would open board1's folder
        for path in folder.glob("*"):
            path.unlink()
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
    """Make `thing` the device the notebooks and the CLI work with."""
    settings.set_current_device(thing)
