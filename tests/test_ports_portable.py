"""What differs on Windows and macOS, checked on Linux: how a port is taken to listen on, the
limit on open files, this computer's .local name and the names of serial ports.

Each system's rule is a function of the platform's name, so the Windows and macOS branches run
here too; the Linux branch runs for real (a second listener on a taken port, a fake `scutil`).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import serial
from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

from kit import board_ports, errors, ports
from kit.classroom import server, streams
from kit.cloud import local_broker
from kit.cloud.broker import serve
from kit.cloud.local import LocalCloud
from kit.cloud.local_broker import LocalName, check_ports_free, local_name
from kit.cloud.options import LocalOptions

# Ports


def test_windows_takes_a_port_exclusively_and_never_shares_it() -> None:
    options = ports.listening_rule("win32").options
    assert (socket.SOL_SOCKET, ports.SO_EXCLUSIVEADDRUSE, 1) in options
    # Windows' SO_REUSEADDR is 4 (Linux's 2): neither may be set there.
    assert not [o for o in options if o[1] in (socket.SO_REUSEADDR, 4)]
    assert ports.SO_EXCLUSIVEADDRUSE & 0xFFFFFFFF == 0xFFFFFFFB  # winsock2.h: ~SO_REUSEADDR


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_linux_and_macos_reuse_a_port_in_time_wait(platform: str) -> None:
    rule = ports.listening_rule(platform)
    assert rule.options == ((socket.SOL_SOCKET, socket.SO_REUSEADDR, 1),)
    assert rule.ask_who_answers  # macOS lets 127.0.0.1:P bind beside 0.0.0.0:P


@pytest.fixture
def taken_port():
    """A port another program listens on (a plain socket, as Mosquitto's would be)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_second_listener_gets_the_kits_message() -> None:
    (first,) = ports.listen_on("127.0.0.1", 0, holder="who", fix="What to do.")
    port = first.getsockname()[1]
    try:
        with pytest.raises(errors.PortInUseError) as refused:
            ports.listen_on("127.0.0.1", port, holder="who", fix="What to do.")
        assert (
            str(refused.value) == f"Port {port} on 127.0.0.1 is already in use (who). What to do."
        )
    finally:
        first.close()
    # Once the first has closed, the port is free again at once.
    for again in ports.listen_on("127.0.0.1", port, holder="who", fix="What to do."):
        again.close()


def test_the_probe_names_a_taken_port(taken_port: int) -> None:
    with pytest.raises(errors.PortInUseError, match=f"Port {taken_port} on 127.0.0.1 is already"):
        check_ports_free("127.0.0.1", [taken_port])
    with pytest.raises(errors.PortInUseError, match="--port"):
        check_ports_free("127.0.0.1", [taken_port])


def test_who_answers_on_a_port_is_asked(taken_port: int) -> None:
    # What refuses a port on macOS, where binding beside a wildcard listener succeeds.
    assert ports._answers(socket.AF_INET, ("127.0.0.1", taken_port))
    assert ports._answers(socket.AF_INET, ("0.0.0.0", taken_port))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        assert not ports._answers(socket.AF_INET, closed.getsockname())


def test_a_second_broker_on_a_taken_port_gets_the_kits_message(tmp_path: Path) -> None:
    with LocalCloud(port=0, ws_port=0) as running:
        taken = running.broker.ports["default"]
        # Its own listeners, past the probe (a second broker that started in between).
        settings = replace(running.broker.settings(), port=taken, database=tmp_path / "b.db")
        with pytest.raises(errors.PortInUseError, match=f"Port {taken} on 127.0.0.1 is already"):
            asyncio.run(serve(settings))
        # And through the probe, as `kit cloud up` meets it.
        with (
            pytest.raises(errors.PortInUseError, match="another broker"),
            LocalCloud(port=taken, ws_port=0),
        ):
            pass


def test_a_second_class_site_gets_the_kits_message(tmp_path: Path, taken_port: int) -> None:
    with pytest.raises(errors.PortInUseError, match="class site running already"):
        server.site_sockets("127.0.0.1", taken_port)
    # serve takes the port before it opens anything (no class in this folder).
    with pytest.raises(errors.PortInUseError, match="KIT_CLASS_PORT"):
        server.serve(tmp_path, None, listen="127.0.0.1", port=taken_port)


def test_kit_class_serve_says_the_port_is_taken_before_the_cloud_starts(tmp_path: Path) -> None:
    env = {**os.environ, "KIT_HOME": str(tmp_path / "home")}

    def kit(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "kit.cli", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert kit("class", "init", "--host", "localhost").returncode == 0
    with socket.socket() as other:
        other.bind(("0.0.0.0", 0))
        other.listen()
        port = other.getsockname()[1]
        done = kit("class", "serve", "--port", str(port))
    assert done.returncode == 1
    assert f"Port {port} on 0.0.0.0 is already in use" in done.stderr
    assert "--port" in done.stderr and "local cloud" not in done.stdout.lower()


# The limit on open files


INFINITY = 2**63 - 1  # macOS's RLIM_INFINITY (Linux's is -1: the function is told which)


@pytest.mark.parametrize(
    ("platform", "soft", "hard", "goal"),
    [
        ("linux", 1024, 524288, 524288),  # Linux: the whole hard limit, as before
        ("linux", 1024, 1024, 1024),
        ("darwin", 256, INFINITY, 10240),  # unlimited, but not above OPEN_MAX
        ("darwin", 256, 5000, 5000),
        ("darwin", 256, 20000, 10240),
        ("darwin", 12000, INFINITY, 12000),  # never lowered
        ("darwin", INFINITY, INFINITY, INFINITY),
    ],
)
def test_open_files_goal(platform: str, soft: int, hard: int, goal: int) -> None:
    assert server.open_files_goal(platform, soft, hard, INFINITY) == goal


@pytest.mark.parametrize(
    ("platform", "open_files", "budget"),
    [
        ("win32", None, streams.STREAMS_TOTAL),  # sockets count against no limit there
        ("darwin", 256, 50),  # what macOS left before the limit was raised
        ("darwin", 10240, streams.STREAMS_TOTAL),
        ("linux", 1024, 724),
        ("linux", None, streams.STREAMS_TOTAL),
    ],
)
def test_live_page_budget(platform: str, open_files: int | None, budget: int) -> None:
    assert streams.live_page_budget(platform, open_files) == budget


# This computer's .local name


@pytest.fixture
def fake_scutil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Put a stand-in for macOS's scutil first on PATH; returns a function that sets what it
    prints and how it exits (as `scutil --get LocalHostName` does)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(socket, "gethostname", lambda: "dhcp-10-1-2-3.campus.example")

    def answer(output: str, code: int = 0) -> None:
        script = folder / "scutil"
        script.write_text(
            f"#!{sys.executable}\nimport sys\n"
            f"assert sys.argv[1:] == ['--get', 'LocalHostName'], sys.argv\n"
            f"print({output!r})\nsys.exit({code})\n"
        )
        script.chmod(0o755)

    return answer


def test_macos_uses_its_bonjour_name(fake_scutil) -> None:
    fake_scutil("Adas-MacBook-Pro")
    assert local_name("darwin") == LocalName("Adas-MacBook-Pro.local")
    assert local_name("darwin").warning() == ""


def test_macos_without_a_bonjour_name_guesses_and_says_so(fake_scutil) -> None:
    fake_scutil("LocalHostName: not set", code=1)
    name = local_name("darwin")
    assert name.name == "dhcp-10-1-2-3.local"
    assert "scutil --get LocalHostName" in name.doubt
    assert "--broker-host" in name.warning() and "--host" in name.warning("--host")


def test_macos_without_scutil_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no scutil, and no /usr/sbin/scutil on Linux
    monkeypatch.setattr(socket, "gethostname", lambda: "ada-mbp.lan")
    assert local_name("darwin").name == "ada-mbp.local"
    assert local_name("darwin").doubt


def test_macos_ignores_an_answer_that_is_no_name(fake_scutil) -> None:
    fake_scutil("Ada's MacBook")
    assert local_name("darwin").name == "dhcp-10-1-2-3.local"


def test_elsewhere_the_host_name_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "ada-laptop.lan")
    assert local_name("linux") == LocalName("ada-laptop.local")
    assert local_name("win32") == LocalName("ada-laptop.local")
    monkeypatch.setattr(socket, "gethostname", lambda: "localhost")
    assert "--broker-host" in local_name("linux").warning()


def test_one_name_for_the_site_the_broker_and_its_certificate() -> None:
    name = local_name().name
    assert server.default_host() == name
    assert name in local_broker.host_names()
    assert local_broker.default_broker_host(LocalOptions(host="0.0.0.0")) == name


# Serial port names


def record(device: str, vid: int | None = None, pid: int | None = None) -> ListPortInfo:
    """A port as pyserial's list_ports gives it."""
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number = vid, pid, "4F3A" if vid else None
    info.description = "Arduino MKR WiFi 1010" if vid else "n/a"
    return info


def test_macos_offers_each_board_once_by_its_cu_name() -> None:
    records = [
        record("/dev/tty.usbmodem1101", 0x2341, 0x8054),
        record("/dev/cu.usbmodem1101", 0x2341, 0x8054),
        record("/dev/tty.Bluetooth-Incoming-Port"),
        record("/dev/cu.Bluetooth-Incoming-Port"),
        record("/dev/tty.usbmodem2201", 0x2341, 0x8057),  # its cu twin missing from the list
    ]
    kept = board_ports.system_ports(records, "darwin")
    assert [r.device for r in kept] == [
        "/dev/cu.usbmodem1101",
        "/dev/cu.Bluetooth-Incoming-Port",
        "/dev/cu.usbmodem2201",
    ]
    assert kept[2].name == "cu.usbmodem2201" and kept[2].pid == 0x8057
    assert records[4].device == "/dev/tty.usbmodem2201"  # the caller's record is unchanged
    # One board, not "2 boards are attached".
    one = [board_ports.recognise(r) for r in board_ports.system_ports(records[:4], "darwin")]
    assert board_ports.choose_board(one).device == "/dev/cu.usbmodem1101"


def test_other_systems_keep_their_names() -> None:
    records = [record("/dev/tty.usbmodem1101"), record("COM3"), record("/dev/ttyACM0")]
    assert board_ports.system_ports(records, "linux") == records
    assert board_ports.system_ports(records, "win32") == records
    assert board_ports.callout_device("/dev/tty.usbmodem1101", "linux") == "/dev/tty.usbmodem1101"
    assert board_ports.callout_device("/dev/tty.usbmodem1101", "darwin") == "/dev/cu.usbmodem1101"


def test_com_ports_are_listed_in_number_order(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = [record("COM10", 0x2341, 0x8054), record("COM3", 0x2341, 0x8057), record("COM4")]
    monkeypatch.setattr(list_ports, "comports", lambda: listed)
    found = board_ports.find_boards(include_virtual=False)
    assert [b.device for b in found] == ["COM3", "COM10", "COM4"]  # boards first, then others


def test_windows_access_denied_means_another_program_has_the_port() -> None:
    # pyserial's words on Windows when the Serial Monitor holds the port.
    error = serial.SerialException(
        "could not open port 'COM3': PermissionError(13, 'Access is denied.', None, 5)"
    )
    busy = board_ports._open_error("COM3", error, "win32")
    assert isinstance(busy, errors.PortBusyError) and "Serial Monitor" in str(busy)
    missing = serial.SerialException(
        "could not open port 'COM9': FileNotFoundError(2, 'The system cannot find the file "
        "specified.', None, 2)"
    )
    gone = board_ports._open_error("COM9", missing, "win32")
    assert isinstance(gone, errors.BoardDisconnectedError)


@pytest.mark.parametrize(
    ("platform", "example"),
    [("win32", "COM3"), ("darwin", "/dev/cu.usbmodem1101"), ("linux", "/dev/ttyACM0")],
)
def test_help_names_ports_as_the_system_does(platform: str, example: str) -> None:
    assert board_ports.example_port(platform) == example
