"""Whatever a person or a damaged data folder feeds the `kit` command: one clear sentence, exit
status 0 or 1, never a traceback, a hang, an echoed password, or a lost file.

Each row of CASES is one hostile input and the message it must produce. The command runs in this
process (argv, stdin and environment as a terminal would give them); the rows that need a real
process (background services, /proc) are tests of their own below.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import csr_pem

from kit import certs, devices, steps
from kit.cli import main
from kit.cloud.local import LocalCloud

DEVICE = "dev_1"


def registered(home: Path) -> Path:
    """Register a device in the local cloud (no broker needed); return its record folder."""
    cloud = LocalCloud()
    steps.register(cloud, certs.load_csr(csr_pem(DEVICE)))
    cloud.store.close()  # as a finished command leaves it: no connection to write it back
    return devices.device_dir(DEVICE)


def write(relative: str, data: str | bytes, with_device: bool = False) -> Callable[[Path], Path]:
    """A state change: (register a device, then) overwrite a file in the data folder."""

    def damage(home: Path) -> Path:
        if with_device:
            registered(home)
        else:
            LocalCloud().store.close()  # a data folder as the kit leaves it
        path = home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    return damage


def fifo(relative: str, with_device: bool = False) -> Callable[[Path], Path]:
    """A state change: a named pipe where a state file belongs (reading it would block)."""

    def damage(home: Path) -> Path:
        path = write(relative, "", with_device)(home)
        path.unlink()
        os.mkfifo(path)
        return home / "cloud" / "ca" / "ca.pem"  # a regular file that must stay as it was

    return damage


def link(relative: str, target: str, with_device: bool = False) -> Callable[[Path], Path]:
    """A state change: a symbolic link where a state file belongs."""

    def damage(home: Path) -> Path:
        path = write(relative, "", with_device)(home)
        path.unlink()
        path.symlink_to(target)
        return home / "kit-home.json"

    return damage


def without_ca_certificate(home: Path) -> Path:
    registered(home)
    (home / "cloud" / "ca" / "ca.pem").unlink()
    return home / "cloud" / "ca" / "ca.key"  # must survive: every device depends on it


def extra_key(home: Path) -> Path:
    path = registered(home) / "device.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "colour": "red"}))
    return path


def no_certificate(home: Path) -> Path:
    path = registered(home) / "certificate.pem"
    path.unlink()
    return path.parent / "device.json"  # what must stay as it was


@dataclass(frozen=True)
class Hostile:
    """One hostile input and the one-line message (a regular expression) it must produce."""

    argv: tuple[str, ...]
    message: str
    stdin: bytes = b""
    env: dict[str, str] = field(default_factory=dict)
    state: Callable[[Path], Path] | None = None  # damages the data folder; returns the file
    secret: str = ""  # must appear nowhere in the output
    status: int = 1


CONFIG_H = ("config-h", "--ssid", "wifi", "--broker", "b.local", "--password-stdin")

CASES: dict[str, Hostile] = {
    # Pastes that made the cleaner backtrack, and inputs that are not text at all.
    "BEGIN and 2,000 spaces": Hostile(
        ("inspect", "-"), "No CSR or certificate found", stdin=b"-----BEGIN" + b" " * 2000
    ),
    "100,000 dashes": Hostile(
        ("inspect", "-"), r"100,000 characters long.*-----BEGIN line", stdin=b"-" * 100_000
    ),
    "non-UTF-8 stdin": Hostile(
        ("inspect", "-"), "No CSR or certificate found", stdin=b"\xff\xfe\x80garbage\xc3"
    ),
    "an unreadable special file": Hostile(
        ("inspect", "/proc/self/mem"), r"/proc/self/mem cannot be read \(Input/output error\)"
    ),
    "an endless file": Hostile(("inspect", "/dev/zero"), "is over 1 MB: not a CSR"),
    "a folder to read": Hostile(("inspect", "/tmp"), "/tmp is a folder; give the file inside it"),
    "a missing file": Hostile(("inspect", "/no/such.pem"), "There is no file /no/such.pem"),
    "--out a folder": Hostile(
        (*CONFIG_H, "--cert", "/dev/null", "--out", "/tmp"),
        r"--out /tmp is a folder.*/tmp/config\.h",
    ),
    "--out in a missing folder": Hostile(
        (*CONFIG_H, "--out", "/no/such/config.h"), "the folder /no/such does not exist"
    ),
    "a name too long for the system": Hostile(
        ("csr", "--out", "x" * 300), "--out: File name too long"
    ),
    "--out where nothing can be written": Hostile(
        (*CONFIG_H, "--out", "/proc/config.h"),
        r"Could not read or write .*/proc.*Check the name, the folder's permissions",
        stdin=b"password1\n",
        state=lambda home: registered(home) / "device.json",
    ),
    "--out a pipe": Hostile(
        (*CONFIG_H, "--out", "pipe"),
        "--out pipe is a device or pipe, not a file",
        stdin=b"password1\n",
        state=lambda home: (os.mkfifo("pipe"), registered(home) / "device.json")[1],
    ),
    "--local-ca and the password both on stdin": Hostile(
        (*CONFIG_H, "--local-ca", "-"), "Only one of --cert, --local-ca and the password"
    ),
    "--cert /dev/stdin and the password on stdin": Hostile(
        (*CONFIG_H, "--cert", "/dev/stdin"), "Only one of --cert, --local-ca and the password"
    ),
    "stdin ends before the password": Hostile(
        (*CONFIG_H, "--cert", "/dev/null"), "--password-stdin: stdin ended before the password"
    ),
    "unregister without --yes, from a script": Hostile(
        ("unregister", "dev_9"),
        "Add --yes to confirm removing: dev_9",  # a name, not a secret
    ),
    # Numbers and ports.
    "port 70000": Hostile(("cloud", "up", "--port", "70000"), "--port: give a port number"),
    "port in Arabic-Indic digits": Hostile(
        (*CONFIG_H, "--port", "١٢٣"), "--port: give a port number from 1 to 65535"
    ),
    "broker port in Arabic-Indic digits": Hostile(
        ("config-h", "--ssid", "w", "--broker", "b.local:١٢٣", "--cert", "/dev/null"),
        r"port ':١٢٣' is not a port number",
        env={"KIT_WIFI_PASSWORD": "password1"},
    ),
    "slot 9": Hostile((*CONFIG_H, "--slot", "9"), "--slot: give a whole number from 0 to 4"),
    "LED value 101": Hostile(("led", DEVICE, "101"), "give a whole number from 0 to 100"),
    "interval nan": Hostile(("sim", "--interval", "nan"), "number of seconds above 0"),
    "keep-days inf": Hostile(("cloud", "up", "--keep-days", "inf"), "number of days above 0"),
    "KIT_PUBLISH_INTERVAL=abc": Hostile(
        ("use", "virtual"),
        "KIT_PUBLISH_INTERVAL must be a number of seconds",
        env={"KIT_PUBLISH_INTERVAL": "abc"},
    ),
    # Secrets typed in the wrong place are never echoed.
    "--password with a value": Hostile(
        ("config-h", "--ssid", "w", "--password", "secret123"),
        r"unknown option --password and a value it does not take \(not shown",
        secret="secret123",
    ),
    "--password=value": Hostile(
        ("config-h", "--ssid", "w", "--password=secret123"),
        "unknown option --password[.]",
        secret="secret123",
    ),
    "an abbreviation of --password-stdin": Hostile(
        ("config-h", "--ssid", "w", "--password-std", "secret123"),
        "unknown option --password-std",
        secret="secret123",
    ),
    "a value given to a flag": Hostile(
        ("config-h", "--ssid", "w", "--password-stdin=secret123"),
        "--password-stdin: takes no value",
        secret="secret123",
    ),
    "a stray word": Hostile(
        ("inspect", "-", "secret123"), "a value it does not take", secret="secret123"
    ),
    "a bad choice": Hostile(
        ("cloud", "secret123"), r"invalid choice \(choose from 'up'", secret="secret123"
    ),
    # WiFi passwords.
    "a tab in the password": Hostile(
        (*CONFIG_H, "--cert", "/dev/null"),
        "has a tab in it",
        stdin=b"pass\tword1\n",
        secret="pass\tword1",
    ),
    "an escape in the password": Hostile(
        (*CONFIG_H, "--cert", "/dev/null"), "has a control character", stdin=b"pass\x1bword\n"
    ),
    "22 euro signs": Hostile(
        (*CONFIG_H, "--cert", "/dev/null"),
        "beyond plain ASCII",
        stdin=("€" * 22 + "\n").encode(),
    ),
    "a board name with an escape and a line break": Hostile(
        ("use", "x\x1b[2J\nline"), r"Settings problem: The board has characters"
    ),
    "KIT_BOARD with a line break": Hostile(
        ("use",), "KIT_BOARD has characters", env={"KIT_BOARD": "x\nline"}
    ),
    "KIT_HOME under a user who does not exist": Hostile(
        ("things",), "a home folder that does not exist", env={"KIT_HOME": "~nouser-kit/x"}
    ),
    "a broker host with an escape": Hostile(
        ("cloud", "up", "--broker-host", "evil\x1b[31m\nline"), "--broker-host: give a host name"
    ),
    # Names that would forge lines or drive the terminal.
    "a newline in a device name": Hostile(
        ("csr", "--name", "dev\nForged line"), r"The device name 'dev\\nForged line' has"
    ),
    "an escape in a device name": Hostile(
        ("csr", "--name", "dev\x1b[31m"), r"The device name 'dev\\x1b\[31m' has"
    ),
    "a device name that climbs folders": Hostile(
        (*CONFIG_H, "--device", "../../etc"), "The device name '../../etc' has '.'"
    ),
    # A damaged data folder.
    "kit-home.json with a text format": Hostile(
        ("things",),
        r"kit-home\.json is damaged: its format is '1', not a whole number.*kit doctor --repair",
        state=write("kit-home.json", '{"format": "1"}'),
    ),
    "settings.json holding a list": Hostile(
        ("use", "virtual"),
        r"settings\.json is damaged: it holds a list.*kit doctor --repair",
        state=write("settings.json", "[]"),
    ),
    "a garbage device.json": Hostile(
        CONFIG_H,
        r"device\.json is damaged: it is not valid JSON.*Register the device again",
        stdin=b"password1\n",
        state=write(f"devices/{DEVICE}/device.json", "{garbage", with_device=True),
    ),
    "a device.json with an extra key": Hostile(
        CONFIG_H,
        r"device\.json is damaged: it has fields this kit does not know \(colour\)",
        stdin=b"password1\n",
        state=extra_key,
    ),
    "a device without its certificate.pem": Hostile(
        CONFIG_H,
        rf"certificate\.pem is damaged: the record of {DEVICE} has no certificate\.pem.*Register",
        stdin=b"password1\n",
        state=no_certificate,
    ),
    "kit-home.json a pipe": Hostile(
        ("things",),
        r"kit-home\.json is damaged: it is a device, pipe or socket",
        state=fifo("kit-home.json"),
    ),
    "settings.json a link to /dev/zero": Hostile(
        ("use", "virtual"),
        r"settings\.json is damaged: it is a device, pipe or socket",
        state=link("settings.json", "/dev/zero"),
    ),
    "device.json a pipe": Hostile(
        CONFIG_H,
        r"device\.json is damaged: it is a device, pipe or socket",
        stdin=b"password1\n",
        state=fifo(f"devices/{DEVICE}/device.json", with_device=True),
    ),
    "settings.json nested 100,000 deep": Hostile(
        ("use", "virtual"),
        r"settings\.json is damaged: it is not valid JSON",
        state=write("settings.json", "[" * 100_000 + "]" * 100_000),
    ),
    "an interval of Infinity in settings.json": Hostile(
        ("use", "virtual"),
        r"settings\.json is damaged: its 'interval' is not a number",
        state=write("settings.json", '{"course": {"interval": Infinity}}'),
    ),
    "an interval too big for a float": Hostile(
        ("use", "virtual"),
        r"settings\.json is damaged: its 'interval' is not a number",
        state=write("settings.json", '{"course": {"interval": 1' + "0" * 400 + "}}"),
    ),
    "cloud.db a dangling link": Hostile(
        ("things",),
        r"cloud\.db is damaged: it is a link",
        state=link("cloud/cloud.db", "/no/such/file"),
    ),
    "the CA without its certificate": Hostile(
        ("things",),
        r"ca\.pem is damaged: it is missing, and its pair is there.*registered again",
        state=without_ca_certificate,
    ),
    "a garbage CA key": Hostile(
        ("things",),
        r"ca is damaged: its key or certificate cannot be read",
        state=write("cloud/ca/ca.key", "garbage", with_device=True),
    ),
    "a garbage cloud.db": Hostile(
        ("things",),
        r"cloud\.db is damaged: SQLite cannot read it .*kit doctor --repair",
        state=write("cloud/cloud.db", b"this is not a database" * 100),
    ),
}


def run(
    argv: tuple[str, ...], stdin: bytes, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """`kit ARGV` in this process with `stdin` as a terminal pipe gives it."""
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        status = main(list(argv))
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_paragraph(err: str) -> None:
    """A message a student can read: one line, a title, no traceback, no raw control codes."""
    assert "Traceback" not in err
    assert err.strip() and "\n" not in err.strip(), err
    assert re.match(r"[A-Za-z][A-Za-z. ]*roblem: ", err), err
    assert all(c.isprintable() for c in err.strip()), repr(err)


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_gets_its_message(
    case: str, kit_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    hostile = CASES[case]
    for name, value in hostile.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(kit_home.parent)
    damaged = hostile.state(kit_home) if hostile.state else None
    before = damaged.read_bytes() if damaged else b""
    capsys.readouterr()
    status, out, err = run(hostile.argv, hostile.stdin, capsys)
    assert status == hostile.status, err
    assert_one_paragraph(err)
    assert re.search(hostile.message, err), err
    if hostile.secret:
        assert hostile.secret not in out + err
    if damaged is not None:  # nothing damaged is overwritten or deleted
        assert damaged.read_bytes() == before


@pytest.mark.parametrize("case", [name for name, c in CASES.items() if "damaged" in c.message])
def test_repair_sets_the_damage_aside_and_the_command_then_works(
    case: str, kit_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = CASES[case]
    damaged = hostile.state(kit_home)
    before = damaged.read_bytes()
    capsys.readouterr()
    status, out, _ = run(("doctor", "--repair"), b"", capsys)
    assert "Set aside:" in out and "Repaired the data folder." in out
    kept = [p for p in kit_home.rglob("*.damaged-*")]
    assert kept, "the damaged file was not kept"
    copies = [p / damaged.name if p.is_dir() else p for p in kept]
    same = [c for c in copies if c.is_file() and c.name.split(".damaged-")[0] == damaged.name]
    assert all(c.read_bytes() == before for c in same)  # (a pipe or link is kept as it was)
    status, _, err = run(("things",), b"", capsys)
    assert status == 0, err
    status, out, _ = run(("doctor", "--repair"), b"", capsys)
    assert "Nothing in the data folder is damaged." in out


def test_a_damaged_record_is_set_aside_when_the_device_is_registered_again(
    kit_home: Path,
) -> None:
    folder = registered(kit_home)
    (folder / "device.json").write_text("{garbage")
    csr = (folder / "csr.pem").read_text()
    steps.register(LocalCloud(), certs.load_csr(csr))  # what the message advises
    assert devices.load(DEVICE).thing == DEVICE
    (kept,) = folder.parent.glob(f"{DEVICE}.damaged-*")
    assert (kept / "device.json").read_text() == "{garbage"


def test_a_cloud_db_that_is_a_folder_is_named(kit_home: Path, capsys) -> None:
    LocalCloud().things()
    db = kit_home / "cloud" / "cloud.db"
    db.unlink()
    db.mkdir()
    status, _, err = run(("things",), b"", capsys)
    assert status == 1
    assert_one_paragraph(err)
    assert "cloud.db" in err


def test_a_newer_database_stays_readable_by_sqlite(kit_home: Path) -> None:
    # The damage check is SQLite's own: a healthy database with an unknown table is fine.
    LocalCloud().things()
    with sqlite3.connect(kit_home / "cloud" / "cloud.db") as db:
        db.execute("CREATE TABLE later (x)")
    assert LocalCloud().things() == []


FORGED = "dev\nSubject:      CN=admin\x1b[2J\u202e"


def test_a_forged_common_name_is_shown_with_its_escapes_visible(tmp_path: Path, capsys) -> None:
    path = tmp_path / "forged.pem"
    path.write_text(csr_pem(FORGED))
    status, out, _ = run(("inspect", str(path)), b"", capsys)
    assert status == 0
    assert all(line.isprintable() for line in out.splitlines())
    subject_lines = [line for line in out.splitlines() if line.startswith("  Subject:")]
    assert len(subject_lines) == 1  # the name did not forge a second one
    assert r"CN=dev\nSubject:      CN=admin\x1b[2J" in subject_lines[0]


def test_html_shows_the_escapes_and_no_markup(tmp_path: Path) -> None:
    from kit.widgets import Console

    csr = certs.load_csr(csr_pem(FORGED + "<script>"))
    shown = csr._repr_html_()
    assert "<script>" not in shown and "\x1b" not in shown and "\n" not in shown.split("<b>")[1]
    assert r"dev\nSubject:" in shown and "&lt;script&gt;" in shown
    console = Console()
    console.update([(0.0, "things/x/environment", b'{"t": 1}\n\x1b[31m<b>forged</b>')])
    assert "\x1b" not in console.widget.value and "<b>forged" not in console.widget.value
    assert r"{&quot;t&quot;: 1} \x1b[31m&lt;b&gt;forged" in console.widget.value  # one row


@pytest.mark.parametrize("value", ["abc", "70000", "١٢٣", "8883 "])
def test_a_bad_broker_port_variable_is_named_once_where_it_is_read(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kit.cli", "lab", "--no-browser"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KIT_BROKER_PORT": value},
    )
    assert done.returncode == 1
    assert_one_paragraph(done.stderr)
    assert "KIT_BROKER_PORT must be a port number from 1 to 65535" in done.stderr
