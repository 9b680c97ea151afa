"""A class provisioned in one command: a roster to accounts and, for a demo or a dry run,
one virtual board per student, registered in the student's name and publishing.

`kit class provision FILE.csv [--virtual]` runs this. Each student is one step: an account (as
`kit class roster add` makes it), then a chip (locked, a key in slot 0), its CSR, the
registration through the class's rules (kit.classroom.ownership.Registrar) and a config.h.
What is done stays done: run again after an interruption, it carries on where it stopped. One
student's board that cannot be registered stops nobody else's: the run finishes the others and
then says whose failed, why, and what to do. The boards' names start with
ownership.BOARD_PREFIX, which students cannot register, so none can be taken first. The boards
run together in one process (kit.sim.fleet), not a process each.
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
from kit.classroom.ownership import BOARD_PREFIX, Registrar
from kit.classroom.store import Account, ClassStore, open_store
from kit.cloud import Cloud
from kit.errors import ClassError, KitError
from kit.places import write_private
from kit.sim import fleet
from kit.sim.eccx08 import ChipTiming, VirtualEccx08
from kit.sim.eccx08_csr import chip_pem

FLEET = "fleet"  # the class folder's folder of virtual boards
AT_ONCE = 4  # registrations in flight
WIFI = ("classroom", "virtual-wifi")  # a virtual board joins any network
NAMED = 5  # students named in a failure report for one problem; the rest are counted


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


@dataclass(frozen=True)
class Failed:
    """A student whose virtual board could not be registered, and why (for the instructor)."""

    student: Account
    thing: str
    problem: str


def provision(
    folder: Path,
    csv_file: Path,
    cloud: Cloud,
    virtual: bool = False,
    interval: float = 10.0,
    progress: Callable[[Progress], None] = lambda _: None,
) -> Provisioned:
    """Accounts for the roster's students who have none, and with `virtual` a registered,
    publishing virtual board for each who has no device yet.

    A board that cannot be registered stops no other: the rest are made and started, then
    ClassError says what was done, whose boards failed and what to do."""
    cards, handout = server.add_roster(folder, csv_file, only_new=True)
    rows = roster.read(csv_file)
    failed: list[Failed] = []
    with open_store(folder) as store:
        registered: list[str] = []
        if virtual:
            names = {name for name, _ in rows}
            students = [a for a in store.accounts() if a.role == "student" and a.name in names]
            registered, failed = _boards(store, cloud, folder / FLEET, students, progress)
    boards = len(fleet.boards_in(folder / FLEET)) if virtual else 0
    if boards:
        fleet.start(folder / FLEET, interval)
    done = Provisioned(cards, handout, registered, boards)
    if failed:
        raise ClassError(_report(done, failed))
    return done


def remove_boards(folder: Path) -> bool:
    """Stop the class's virtual boards and remove them, chips and all (kit class teardown);
    whether they ran."""
    ran = fleet.stop(folder / FLEET)
    shutil.rmtree(folder / FLEET, ignore_errors=True)
    return ran


def device_name(username: str) -> str:
    """The virtual board's name for a student: the class's board prefix, their username as a
    device name allows it, and a short checksum of it, since `ann.lee` and `ann-lee` read
    alike as names. No student can register a name with that prefix (ownership.Registrar)."""
    room = 64 - len(BOARD_PREFIX) - 9  # a CN holds 64 characters; 9 for "_" and the checksum
    plain = "".join(c if c.isascii() and c.isalnum() else "_" for c in username)[:room]
    name = f"{BOARD_PREFIX}{plain}_{zlib.crc32(username.encode()):08x}"
    certs.validate_device_name(name)
    return name


def _boards(
    store: ClassStore,
    cloud: Cloud,
    boards: Path,
    students: list[Account],
    progress: Callable[[Progress], None],
) -> tuple[list[str], list[Failed]]:
    """A registered virtual board for each student without a device; return their names, and
    the students whose board failed (the others are made all the same).

    A few at a time: the cloud paces each API (AWS: under 15 requests a second) and backs off
    when throttled, and the waits of one registration overlap the calls of the others."""
    registrar = Registrar(store, cloud)
    started, registered, failed = time.monotonic(), [], []
    todo = [s for s in students if not store.things_of(s.username)]
    done = len(students) - len(todo)
    progress(Progress(done, len(students), 0.0, None))
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        futures = {pool.submit(_board, registrar, boards / s.username, s): s for s in todo}
        pending = list(futures)
        try:
            for number, finished in enumerate(as_completed(pending), start=1):
                try:
                    registered.append(finished.result())
                except KitError as error:  # this student's alone: the others carry on
                    student = futures[finished]
                    failed.append(Failed(student, device_name(student.username), str(error)))
                elapsed = time.monotonic() - started
                left = elapsed / number * (len(todo) - number)
                progress(Progress(done + number, len(students), elapsed, left))
        finally:
            for future in pending:  # interrupted: what has begun finishes, nothing more starts
                future.cancel()
    return registered, failed


def _board(registrar: Registrar, folder: Path, student: Account) -> str:
    """One student's virtual board: chip, key, CSR, registration, config.h."""
    chip = VirtualEccx08(folder / "chip", ChipTiming.instant())
    if not chip.locked:
        chip.write_configuration_and_lock()
    if not chip.has_key(0):
        chip.generate_key(0)
    thing = device_name(student.username)
    csr = certs.load_csr(chip_pem(chip.csr(0, {"CN": thing})))
    outcome = registrar.register(student.username, csr, 0, class_board=True)
    registration = outcome.registration
    if outcome.conflict or outcome.outside:
        # The Registrar's words are for a student; the instructor is the one who can act.
        raise ClassError(
            f"the cloud holds '{thing}' from before this class (an earlier class's board, or "
            "this one's chip made anew), so the class cannot give it out: remove it from the "
            f"cloud (for the class's local cloud: course.unregister('{thing}') in a notebook on "
            f"this computer, or `kit unregister {thing}`; on AWS, in the IoT console)."
        )
    if registration is None:
        raise ClassError(outcome.problem)
    rendered = config_h.for_registration(registration, *WIFI)
    write_private(folder / "config.h", rendered.text)
    return thing


def _report(done: Provisioned, failed: list[Failed]) -> str:
    """What a run did and whose boards it could not make, grouped by problem, with what to do
    (one paragraph: the CLI prints it as the run's last words)."""
    made = (
        f"Added {len(done.cards)} student(s); their cards: {done.handout}. "
        if done.handout is not None
        else ""
    )
    groups: dict[str, list[Failed]] = {}
    for failure in failed:
        groups.setdefault(failure.problem, []).append(failure)
    reasons = []
    for problem, students in groups.items():
        named = ", ".join(f"{f.student.name} ({f.thing})" for f in students[:NAMED])
        more = f" and {len(students) - NAMED} more" if len(students) > NAMED else ""
        reasons.append(f"{named}{more}: {problem}")
    return (
        f"{made}Registered {len(done.registered)} virtual board(s) now; {done.boards} run in "
        f"the background. {len(failed)} student(s) have no virtual board yet. "
        + " ".join(reasons)
        + " Once that is seen to, run `kit class provision` with --virtual again: what is "
        "done stays done, and only these students are tried again."
    )
