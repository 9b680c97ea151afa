"""`kit class provision`: a roster to accounts and a publishing virtual board for each student,
all the boards in one process; interrupted and run again it carries on; `kit class teardown`
stops the boards and leaves nothing in the cloud."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from class_server import class_env, kit, kit_ok
from helpers import wait_until

from kit import steps
from kit.background import alive
from kit.classroom import provision, server
from kit.classroom.store import open_store
from kit.cloud.local import LocalCloud
from kit.cloud.service import service_state
from kit.places import using_home
from kit.sim import fleet

NAMES = [f"Student {number:02d}" for number in range(30)]


@pytest.mark.timeout(300)
def test_thirty_virtual_students_then_teardown_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "instructor"
    env = class_env(home)
    kit_ok(env, "class", "init", "--host", "localhost")
    roster = tmp_path / "roster.csv"
    roster.write_text("name\n" + "\n".join(NAMES) + "\n", encoding="utf-8")
    try:
        command = ("class", "provision", str(roster), "--virtual", "--interval", "1")
        local = ("--broker-host", "localhost")  # the name boards use for this computer here
        first = kit_ok(env, *command, *local)
        assert "Added 30 student(s)" in first and "Registered 30 virtual board(s) now" in first
        assert "30/30 students" in first and "s left" in first  # the progress bar
        # Run again: nothing new, nothing twice.
        again = kit_ok(env, *command, *local)
        assert "Every student of the roster has an account already." in again
        assert "Registered 0 virtual board(s) now; 30 run" in again
        boards = home / "class" / provision.FLEET
        pid = fleet.running(boards)
        assert pid is not None
        with using_home(home):
            cloud = LocalCloud()
            things = cloud.things()
            assert len(things) == 30
            wait_until(
                lambda: all(cloud.messages(thing, latest=1) for thing in things),
                timeout=60,
                what="a reading from every virtual board",
            )
        gone = kit(env, "class", "teardown", "--yes", "--accounts")
        assert gone.returncode == 0 and "Removed 30 device(s)" in gone.stdout
        wait_until(lambda: not alive(pid), what="the boards' process to end")
        assert not boards.exists()
        with using_home(home):
            assert LocalCloud().things() == []
            assert service_state() is None  # nothing left running
    finally:
        with using_home(home):
            steps.stop_everything()


def test_an_interrupted_provisioning_carries_on_where_it_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "class"
    server.init(folder, "localhost")
    roster = tmp_path / "roster.csv"
    roster.write_text("name\n" + "\n".join(NAMES[:8]) + "\n", encoding="utf-8")
    seen: list[int] = []

    def interrupt_after_three(step: provision.Progress) -> None:
        seen.append(step.done)
        if step.done == 3:
            raise KeyboardInterrupt

    with LocalCloud(port=0, ws_port=0) as cloud:
        try:
            with pytest.raises(KeyboardInterrupt):
                provision.provision(folder, roster, cloud, True, progress=interrupt_after_three)
            # What had begun finished (a few at a time); nothing more started.
            first = len(cloud.things())
            assert 3 <= first <= 3 + provision.AT_ONCE
            again = provision.provision(
                folder, roster, cloud, True, progress=lambda step: seen.append(step.done)
            )
            assert len(again.registered) == 8 - first and again.cards == [] and again.boards == 8
            with open_store(folder) as store:
                owners = store.all_things()
            assert len(owners) == 8 and len(set(owners.values())) == 8
            assert sorted(cloud.things()) == sorted(owners)
            # The progress said where it was: counts up to all, with time left.
            assert seen[:4] == [0, 1, 2, 3] and seen[-1] == 8
            # The boards run, and are found running the moment provisioning returns.
            pid = fleet.running(folder / provision.FLEET)
            assert pid is not None
        finally:
            provision.remove_boards(folder)
            for thing in cloud.things():
                cloud.unregister(thing)
    wait_until(lambda: not alive(pid), what="the boards' process to end")


def test_every_student_gets_a_usable_device_name_of_their_own() -> None:
    # In the class boards' own space, which no student may register (tests/test_provision_names.py).
    assert provision.device_name("ada.lovelace").startswith("class-ada_lovelace_")
    assert re.fullmatch(r"class-[a-z0-9_]+_[0-9a-f]{8}", provision.device_name("élise-2"))
    # Usernames that read alike as device names still get names of their own.
    alike = {provision.device_name(name) for name in ("ann.lee", "ann_lee", "ann-lee")}
    assert len(alike) == 3
    assert len(provision.device_name("x" * 80)) <= 64  # a CN is at most 64 characters
