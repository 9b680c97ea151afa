"""`kit class provision --virtual` against a student who registers a classmate's board name
first: the name is in a space no student may register, and one student's board that cannot be
made stops nobody else's; the run reports it, and a rerun tries only that student again."""

from __future__ import annotations

from pathlib import Path

import pytest
from class_site import close_class, cloud, serve_class
from helpers import csr_pem, wait_until

from kit import certs
from kit.background import alive
from kit.classroom import provision
from kit.cloud.local import LocalCloud
from kit.errors import ClassError
from kit.sim import fleet

__all__ = ["cloud"]  # fixture

ROSTER = {"Ada": "ada", "Bob": "bob", "Cy Lee": "cy", "Di Ng": "di", "Eve Ro": "eve"}


@pytest.mark.timeout(180)
def test_a_classmates_board_name_cannot_be_taken_and_one_failure_stops_nobody(
    tmp_path: Path, cloud: LocalCloud
) -> None:
    folder = tmp_path / "class"
    site = serve_class(folder, cloud)  # Ada and Bob have accounts and the API
    roster = tmp_path / "roster.csv"
    lines = [f"{name},{user}" for name, user in ROSTER.items()]
    roster.write_text("name,username\n" + "\n".join(lines) + "\n", encoding="utf-8")
    leftover = provision.device_name("di")
    pid = None
    try:
        provision.provision(folder, roster, cloud)  # the accounts first, as a class starts
        # Ada registers Bob's would-be board name before the boards are made, in any case.
        ada = site.api("ada")
        for taken in (provision.device_name("bob"), provision.device_name("bob").upper()):
            answer = ada.post("/things", json={"csr": csr_pem(taken), "slot": 0})
            assert answer.status_code == 400, answer.text
            assert "kept for the class's own virtual boards" in answer.json()["detail"]
        assert site.store.things_of("ada") == []
        # Di's name is held in the cloud from before this class (a CSR is no secret), which
        # the class cannot take over: Di's board fails, and only Di's.
        cloud.register(certs.load_csr(csr_pem(leftover)))

        with pytest.raises(ClassError) as first:
            provision.provision(folder, roster, cloud, True, interval=5)
        report = str(first.value)
        owners = site.store.all_things()
        expected = {provision.device_name(user): user for user in ROSTER.values() if user != "di"}
        assert owners == expected  # every other student has their board
        assert "4 virtual board(s) now" in report and "1 student(s) have no virtual board" in report
        assert f"Di Ng ({leftover}): the cloud holds '{leftover}' from before" in report
        assert f"kit unregister {leftover}" in report and "kit class provision" in report
        pid = fleet.running(folder / provision.FLEET)
        assert pid is not None and len(fleet.boards_in(folder / provision.FLEET)) == 4

        # Run again: the others stay done; only Di is tried, and fails for Di's reason alone.
        with pytest.raises(ClassError) as again:
            provision.provision(folder, roster, cloud, True, interval=5)
        assert "0 virtual board(s) now" in str(again.value)
        assert "1 student(s)" in str(again.value) and f"Di Ng ({leftover})" in str(again.value)
        assert site.store.all_things() == expected

        # Done as the report says: the name leaves the cloud, and Di's board is made.
        cloud.unregister(leftover)
        last = provision.provision(folder, roster, cloud, True, interval=5)
        assert last.registered == [leftover] and last.boards == 5
        assert site.store.owner(leftover) == "di"
        pid = fleet.running(folder / provision.FLEET)
    finally:
        provision.remove_boards(folder)
        if leftover in cloud.things() and site.store.owner(leftover) is None:
            cloud.unregister(leftover)
        close_class(site, cloud)
    if pid is not None:
        wait_until(lambda: not alive(pid), what="the boards' process to end")
