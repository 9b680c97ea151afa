"""`kit doctor --repair`: find the files in the data folder the kit cannot read, set them aside.

Nothing is deleted: each damaged file (or a device's whole folder) is renamed
<name>.damaged-<time> beside where it was, so a student or an instructor can still look at it,
and the kit starts that part afresh.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from kit import devices, settings
from kit.cloud.local_ca import LocalCA
from kit.cloud.store import Store
from kit.errors import CloudError, DamagedFileError
from kit.places import MARKER, data_format, kit_home, set_aside, write_marker


@dataclass(frozen=True)
class SetAside:
    """One repair: what was damaged and where it is kept now."""

    problem: str  # the message that named the file and what is wrong with it
    kept: Path


def damage() -> list[DamagedFileError]:
    """Every damaged file in the data folder, as the error that reading it raises."""
    home = kit_home(create=False)
    if (home / MARKER).exists():
        found = _check(lambda: data_format(home))
        if found:
            return found  # nothing else can be read until the marker is whole again
    checks: list[Callable[[], object]] = [settings.load, settings.current_device]
    for folder in _device_folders(home):
        checks.append(partial(_read_record, folder.name))
    if (home / "cloud" / "ca").is_dir():
        checks.append(lambda: LocalCA(home / "cloud" / "ca"))
    if (home / "cloud" / "cloud.db").exists() or (home / "cloud" / "cloud.db").is_symlink():
        checks.append(lambda: Store(home / "cloud" / "cloud.db").close())
    return [error for check in checks for error in _check(check)]


def repair() -> list[SetAside]:
    """Set every damaged file aside (the marker is rewritten); return what was done."""
    from kit.cloud.service import service_state  # the service sits above the data it keeps

    done = []
    while found := damage():
        error = found[0]
        target = error.target
        if target.name == "cloud.db" and service_state() is not None:
            raise CloudError(
                "Stop the local cloud first (course.stop(), or `kit stop`), then repair again."
            )
        if target.name == "cloud.db":
            for sibling in ("cloud.db-wal", "cloud.db-shm"):  # SQLite's journal goes with it
                if (target.parent / sibling).exists():
                    set_aside(target.parent / sibling)
        kept = set_aside(target)
        if target.name == MARKER:
            write_marker(target.parent)
        done.append(SetAside(str(error), kept))
    return done


def _check(read: Callable[[], object]) -> list[DamagedFileError]:
    try:
        read()
    except DamagedFileError as error:
        return [error]
    return []


def _device_folders(home: Path) -> list[Path]:
    """Device record folders (not those already set aside: their names have a '.')."""
    root = home / "devices"
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if os.path.lexists(p / "device.json") and "." not in p.name
    )


def _read_record(thing: str) -> None:
    """Read a record and the files the course needs from it."""
    record = devices.load(thing)
    record.certificate_pem  # noqa: B018 - reading is the check
    record.ca_pem  # noqa: B018
