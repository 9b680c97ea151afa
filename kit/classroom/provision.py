"""A class provisioned in one command: a roster to accounts and, for a demo or a dry run,
one virtual board per student, registered in the student's name and publishing.

`kit class provision FILE.csv [--virtual]` runs this. Each student is one step: an account (as
`kit class roster add` makes it), then a chip (locked, a key in slot 0), its CSR, the
registration through the class's rules (kit.classroom.ownership.Registrar) and a config.h.
What is done stays done: run again after an interruption, it carries on where it stopped. The
boards run together in one process (kit.sim.fleet), not a process each.
"""

from __future__ import annotations

import shutil
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from kit import certs, config_h
from kit.classroom import roster, server
from kit.classroom.ownership import Registrar
from kit.classroom.store import Account, ClassStore, open_store
from kit.cloud import Cloud
from kit.errors import ClassError
from kit.places import write_private
from kit.sim import fleet
from kit.sim.eccx08 import ChipTiming, VirtualEccx08
from kit.sim.eccx08_csr import chip_pem

FLEET = "fleet"  # the class folder's folder of virtual boards
AT_ONCE = 4  # registrations in flight
WIFI = ("classroom", "virtual-wifi")  # a virtual board joins any network


@dataclass(frozen=True)
class Progress:
    """How far provisioning is: students done of all, seconds so far, seconds left (a guess
    from the pace so far; None before the first)."""

    done: int
    total: int
    elapsed: float
    left: float | None


@dataclass(frozen=True)
class Provisioned:
    """What one run did: new accounts (their cards), devices registered now, boards running."""

    cards: list[roster.Card]
    handout: Path | None
    registered: list[str]
    boards: int


def provision(
    folder: Path,
    csv_file: Path,
    cloud: Cloud,
    virtual: bool = False,
    interval: float = 10.0,
    progress: Callable[[Progress], None] = lambda _: None,
) -> Provisioned:
    """Accounts for the roster's students who have none, and with `virtual` a registered,
    publishing virtual board for each who has no device yet."""
    cards, handout = server.add_roster(folder, csv_file, only_new=True)
    rows = roster.read(csv_file)
    with open_store(folder) as store:
        registered: list[str] = []
        if virtual:
            names = {name for name, _ in rows}
            students = [a for a in store.accounts() if a.role == "student" and a.name in names]
            registered = _boards(store, cloud, folder / FLEET, students, progress)
    boards = len(fleet.boards_in(folder / FLEET)) if virtual else 0
    if boards:
        fleet.start(folder / FLEET, interval)
    return Provisioned(cards, handout, registered, boards)


def remove_boards(folder: Path) -> bool:
    """Stop the class's virtual boards and remove them, chips and all (kit class teardown);
    whether they ran."""
    ran = fleet.stop(folder / FLEET)
    shutil.rmtree(folder / FLEET, ignore_errors=True)
    return ran


def device_name(username: str) -> str:
    """The virtual board's name for a student: their username as a device name allows it,
    and a short checksum of it, since `ann.lee` and `ann-lee` read alike as names."""
    plain = "".join(c if c.isascii() and c.isalnum() else "_" for c in username)[:48]
    name = f"{plain}_{zlib.crc32(username.encode()):08x}"
    certs.validate_device_name(name)
    return name


def _boards(
    store: ClassStore,
    cloud: Cloud,
    boards: Path,
    students: list[Account],
    progress: Callable[[Progress], None],
) -> list[str]:
    """A registered virtual board for each student without a device; return their names.

    A few at a time: the cloud paces each API (AWS: under 15 requests a second) and backs off
    when throttled, and the waits of one registration overlap the calls of the others."""
    registrar = Registrar(store, cloud)
    started, registered = time.monotonic(), []
    todo = [s for s in students if not store.things_of(s.username)]
    done = len(students) - len(todo)
    progress(Progress(done, len(students), 0.0, None))
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        pending = [pool.submit(_board, registrar, boards / s.username, s) for s in todo]
        try:
            for number, finished in enumerate(as_completed(pending), start=1):
                registered.append(finished.result())
                elapsed = time.monotonic() - started
                left = elapsed / number * (len(todo) - number)
                progress(Progress(done + number, len(students), elapsed, left))
        finally:
            for future in pending:  # interrupted: what has begun finishes, nothing more starts
                future.cancel()
    return registered


def _board(registrar: Registrar, folder: Path, student: Account) -> str:
    """One student's virtual board: chip, key, CSR, registration, config.h."""
    chip = VirtualEccx08(folder / "chip", ChipTiming.instant())
    if not chip.locked:
        chip.write_configuration_and_lock()
    if not chip.has_key(0):
        chip.generate_key(0)
    thing = device_name(student.username)
    csr = certs.load_csr(chip_pem(chip.csr(0, {"CN": thing})))
    outcome = registrar.register(student.username, csr, 0)
    registration = outcome.registration
    if registration is None:
        raise ClassError(f"{student.name}'s virtual board was not registered: {outcome.problem}")
    rendered = config_h.render(
        *WIFI,
        registration.broker_host,
        registration.certificate_pem,
        port=registration.broker_port,
        local_ca=config_h.trust_anchor(registration.ca_pem),
    )
    write_private(folder / "config.h", rendered.text)
    return thing
