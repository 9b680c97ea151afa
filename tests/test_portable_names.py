"""Names and files that work on the students' Windows and macOS laptops as well as on Linux.

A device name is also a folder (KIT_HOME/devices/<name>): Windows refuses ':' and the names it
keeps for devices (CON, NUL, COM1 ...), and Windows and macOS do not tell 'Board1' from 'board1'.
The files the kit writes must be the same bytes everywhere (LF, never CR LF), and the kit must
read its files back when a Windows editor or copy gave them CR LF.
"""

from __future__ import annotations

import _pyio
import os
import re
import string
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kit import devices, errors, names, places
from kit import settings as kit_settings
from kit.sim.eccx08 import new_serial_number

# What Windows' documentation ("Naming Files, Paths, and Namespaces") says, written out here
# rather than taken from kit.names, so that the two are checked against each other.
RESERVED = (
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{d}" for d in "0123456789¹²³"]
    + [f"LPT{d}" for d in "0123456789¹²³"]
)
ASCII_RESERVED = [name for name in RESERVED if name.isascii()]
FORBIDDEN = set('<>:"/\\|?*') | {chr(code) for code in range(32)}


def windows_refuses(name: str) -> str:
    """Why Windows (or macOS or Linux) cannot have a file called `name`; "" if it can."""
    if name in ("", ".", ".."):
        return "no name"
    if len(name.encode("utf-16-le")) // 2 > 255 or len(name.encode("utf-8")) > 255:
        return "too long"
    if set(name) & FORBIDDEN:
        return "forbidden character"
    if name.endswith((".", " ")):
        return "trailing dot or space"
    if name.partition(".")[0].rstrip(" ").upper() in RESERVED:  # NUL.txt is NUL
        return "reserved"
    return ""


def accepted(name: str) -> bool:
    """Whether validate_device_name takes `name`."""
    try:
        names.validate_device_name(name)
    except errors.DeviceNameError:
        return False
    return True


def any_case(word: str) -> st.SearchStrategy[str]:
    """`word` with each letter in upper or lower case."""
    return st.tuples(*(st.sampled_from(sorted({c, c.lower(), c.upper()})) for c in word)).map(
        "".join
    )


# Text made mostly of what a name may hold, salted with what a file name may not.
NAME_CHARACTERS = string.ascii_letters + string.digits + "-_" * 4 + ':.<>"/\\|?* \t\x00¹²³é'
reserved_like = st.tuples(
    st.sampled_from(RESERVED).flatmap(any_case),
    st.sampled_from(["", ".txt", ".tar.gz", " ", "-1", "_", "0"]),
).map("".join)
candidate_names = st.one_of(st.text(NAME_CHARACTERS, max_size=70), reserved_like)
old_rule_names = st.text(string.ascii_letters + string.digits + "_:-", min_size=1, max_size=64)


@settings(max_examples=2000, deadline=None)
@given(candidate_names)
@example("CON")
@example("com1")
@example("Lpt9")
@example("a:b")
@example("COM10")
def test_every_accepted_name_is_a_windows_file_name(name: str) -> None:
    if accepted(name):
        assert windows_refuses(name) == "", name
        assert names.portable_name_problem(name) == ""


@settings(max_examples=2000, deadline=None)
@given(st.one_of(candidate_names, st.text(max_size=300)))
@example("nul.txt")
@example("COM¹")
@example("a" * 256)
@example("ok.")
def test_the_portable_rule_agrees_with_windows(name: str) -> None:
    assert bool(names.portable_name_problem(name)) == bool(windows_refuses(name)), name


@settings(max_examples=500, deadline=None)
@given(old_rule_names)
def test_every_name_valid_before_and_portable_is_still_valid(name: str) -> None:
    if name.lower().startswith("kit-") or ":" in name or name.upper() in RESERVED:
        return
    assert accepted(name), name


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ASCII_RESERVED).flatmap(any_case))
def test_reserved_names_are_refused_with_advice_that_works(name: str) -> None:
    with pytest.raises(errors.DeviceNameError) as caught:
        names.validate_device_name(name)
    message = str(caught.value)
    assert f"'{name}' is one Windows keeps for itself" in message
    suggested = re.search(r"such as '([^']+)'", message)
    assert suggested is not None and accepted(suggested.group(1))


@pytest.mark.parametrize("name", ["COM¹", "lpt²", "Com³"])
def test_superscript_reserved_names_are_refused(name: str) -> None:
    with pytest.raises(errors.DeviceNameError, match="not a plain ASCII letter"):
        names.validate_device_name(name)
    assert names.windows_reserved(name) and names.windows_reserved(f"{name}.txt")


@settings(max_examples=200, deadline=None)
@given(st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=30), st.data())
def test_a_colon_is_refused_and_the_advice_fixes_it(plain: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(plain)))
    name = plain[:at] + ":" + plain[at:]
    with pytest.raises(errors.DeviceNameError, match="':', which Windows does not allow"):
        names.validate_device_name(name)
    fixed = name.replace(":", "-")  # what the message says to do
    if not fixed.lower().startswith("kit-"):
        assert accepted(fixed)


@given(st.text("0123456789ABCDEF", min_size=18, max_size=18))
def test_the_chips_serial_number_is_a_valid_name(serial: str) -> None:
    assert names.validate_device_name(serial).name == serial


def test_the_virtual_chips_serial_numbers_are_valid_names() -> None:
    for _ in range(50):
        serial = new_serial_number()
        assert names.validate_device_name(serial).name == serial


# Device records: names that differ only in case


def record(thing: str, certificate_id: str = "c1") -> devices.DeviceRecord:
    """A record with made-up broker facts (nothing here parses them)."""
    return devices.DeviceRecord(
        thing=thing,
        cloud="local",
        broker_host="mylaptop.local",
        broker_port=8883,
        certificate_id=certificate_id,
    )


def pem(kind: str, body: str) -> str:
    """A PEM-shaped text (the record keeps it as it is given)."""
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


def save(thing: str, certificate_id: str = "c1") -> devices.DeviceRecord:
    """Save a record of `thing` with PEM files that name it."""
    return devices.save(
        record(thing, certificate_id),
        pem("CERTIFICATE REQUEST", f"csr of {thing}"),
        pem("CERTIFICATE", f"certificate of {thing}"),
        pem("CERTIFICATE", "ca"),
    )


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file in `folder` and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_name_differing_only_in_case_is_refused_and_the_first_record_kept() -> None:
    first = save("Board1")
    kept = folder_bytes(first.folder)
    with pytest.raises(errors.DeviceNameError) as caught:
        save("board1", "c2")
    message = str(caught.value)
    assert "'board1' differs from 'Board1'" in message
    assert "only in upper and lower case" in message
    assert "kit unregister Board1" in message
    assert folder_bytes(first.folder) == kept
    assert sorted(p.name for p in (first.folder.parent).iterdir()) == ["Board1"]
    assert devices.load("Board1") == first
    assert devices.current_name() == "Board1"
    assert [r.thing for r in devices.all_records()] == ["Board1"]


def test_saving_the_same_name_again_is_not_a_case_clash() -> None:
    save("Board1", "c1")
    again = save("Board1", "c2")
    assert devices.load("Board1").certificate_id == again.certificate_id == "c2"


def test_a_name_differing_only_in_case_is_not_found_and_not_forgotten() -> None:
    # On Windows and macOS devices/board1 opens devices/Board1: the kit must not read it as
    # board1's record (and set it aside as damaged) nor delete it when board1 is forgotten.
    first = save("Board1")
    kept = folder_bytes(first.folder)
    with pytest.raises(errors.DeviceNotFoundError, match="but 'Board1' is: the names differ"):
        devices.load("board1")
    devices.forget("board1")
    assert folder_bytes(first.folder) == kept
    devices.forget("Board1")
    assert not first.folder.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="Windows cannot have such a folder")
def test_a_record_an_older_kit_made_under_a_refused_name_is_skipped() -> None:
    save("good")
    old = places.kit_home() / "devices" / "lab:3"  # ':' was allowed before (not on Windows)
    old.mkdir()
    (old / "device.json").write_text("{}")
    assert [r.thing for r in devices.all_records()] == ["good"]


# Line ends


@pytest.fixture
def windows_text_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files opened by the kit behave as on Windows: text mode writes CR LF for each LF.

    CPython's own io decides that when it is compiled; its pure-Python twin reads os.linesep.
    """
    monkeypatch.setattr(os, "linesep", "\r\n")
    monkeypatch.setattr(os, "fdopen", lambda fd, *args, **kwargs: _pyio.open(fd, *args, **kwargs))


def test_the_windows_stand_in_does_turn_lf_into_crlf(
    windows_text_files: None, tmp_path: Path
) -> None:
    # Without this, the next test could pass on a stand-in that changes nothing.
    path = tmp_path / "text.txt"
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT), "w", encoding="utf-8") as out:
        out.write("a\nb\n")
    assert path.read_bytes() == b"a\r\nb\r\n"


def test_files_the_kit_writes_have_lf_even_on_windows(windows_text_files: None) -> None:
    saved = save("Board1")
    written = folder_bytes(saved.folder)
    written["settings.json"] = kit_settings.path().read_bytes()
    written[places.MARKER] = (places.kit_home() / places.MARKER).read_bytes()
    log = places.kit_home() / "logs" / "a.log"
    with places.open_private(log) as out:
        out.write(b"line one\nline two\n")
    written["a.log"] = log.read_bytes()
    for name, data in written.items():
        assert b"\n" in data, name
        assert b"\r" not in data, name
    assert written["certificate.pem"] == pem("CERTIFICATE", "certificate of Board1").encode()
    places.write_private(log.parent / "crlf.txt", "kept\r\nas given\n")
    assert (log.parent / "crlf.txt").read_bytes() == b"kept\r\nas given\n"


def test_records_with_crlf_line_ends_are_read() -> None:
    saved = save("Board1")
    for path in saved.folder.iterdir():  # as if edited in Notepad or copied from Windows
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    read = devices.load("Board1")
    assert read == saved
    assert read.certificate_pem == pem("CERTIFICATE", "certificate of Board1")
    assert read.csr_pem == pem("CERTIFICATE REQUEST", "csr of Board1")
    assert "\r" not in read.ca_pem


def test_read_state_reads_crlf_as_lf(tmp_path: Path) -> None:
    path = tmp_path / "state.txt"
    path.write_bytes(b"one\r\ntwo\r\n\r\nthree")
    assert places.read_state(path, "then carry on") == "one\ntwo\n\nthree"
    path.write_bytes(b'{\r\n  "format": 1\r\n}\r\n')
    assert places.read_json(path, "then carry on") == {"format": 1}


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r")))
def test_write_private_then_read_state_round_trips(tmp_path: Path, text: str) -> None:
    path = places.write_private(tmp_path / "round.txt", text)
    assert path.read_bytes() == text.encode("utf-8")
    assert places.read_state(path, "then carry on") == text


def test_virtual_board_names_are_folder_names_on_every_system(tmp_path) -> None:
    from kit.errors import VirtualBoardError
    from kit.places import using_home
    from kit.sim import board as vboard

    with using_home(tmp_path):
        assert vboard.board_dir("lab-1").name == "lab-1"
        for name in ("con", "NUL", "com1", "Lpt9", "a:b", "caf\u00e9", "COM\u00b9"):
            with pytest.raises(VirtualBoardError):
                vboard.board_dir(name)
        (tmp_path / "boards" / "Lab").mkdir(parents=True)
        with pytest.raises(VirtualBoardError, match="only in upper and lower case"):
            vboard.board_dir("lab")
        assert vboard.board_dir("Lab").name == "Lab"
