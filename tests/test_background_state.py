"""Background processes as an attacker and a crash see them: what they inherit, what they leave
readable, and whether `kit cloud status` tells the truth after kill -9 or two starts at once."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import csr_pem
from test_cloud_service import free_port

from kit import background, certs, locks, steps
from kit.cloud import local, service
from kit.sim import board as vboard

SECRET = "hunter2-wifi-password"
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def start_kit(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A `kit` command started as a terminal would start it, with the student's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "kit.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def cloud_up(port: int, ws_port: int, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return start_kit("cloud", "up", "--port", str(port), "--ws-port", str(ws_port), env=env)


@pytest.fixture
def ports():
    """Two free ports; whatever ran on them is stopped afterwards."""
    yield free_port(), free_port()
    service.stop_service()


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_background_processes_do_not_inherit_secrets(ports, monkeypatch) -> None:
    secrets = {"KIT_WIFI_PASSWORD": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET}
    up = cloud_up(*ports, env=secrets)
    assert up.wait(60) == 0, up.stderr.read()
    cloud = environ_of(service.service_state().pid)
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)  # as in a notebook kernel that starts the board
    board = vboard.start("secretless", instant_chip=True)
    try:
        for pid, entry in (
            (service.service_state().pid, "kit.cloud.service"),
            (board.pid, "kit.sim"),
        ):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert entry.encode() in command and b"kit.cli" not in command  # its own entry
        for environment in (cloud, environ_of(board.pid)):
            assert SECRET not in "".join(environment.values())
            assert environment["KIT_HOME"] == os.environ["KIT_HOME"]  # what they do need
            assert environment["PATH"]
    finally:
        vboard.stop("secretless")


def test_the_data_folder_is_private(ports, kit_home: Path) -> None:
    up = cloud_up(*ports)
    assert up.wait(60) == 0, up.stderr.read()
    steps.register(local.LocalCloud(), certs.load_csr(csr_pem("private_1")))  # a device record too
    board = vboard.start("private", instant_chip=True)
    try:
        time.sleep(0.5)  # the board writes its serial log
    finally:
        vboard.stop(board.name)
    service.stop_service()
    found = {p.relative_to(kit_home).as_posix(): p for p in [kit_home, *kit_home.rglob("*")]}
    for name in ("cloud/cloud.db", "cloud/broker.log", "boards/private/serial.log"):
        assert name in found, sorted(found)
    for name, path in found.items():
        mode = stat.S_IMODE(path.stat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        assert mode == wanted, f"{name or 'the data folder'} is {mode:o}, not {wanted:o}"


def test_an_older_data_folder_is_made_private(kit_home: Path) -> None:
    local.LocalCloud().store.close()
    for path in (kit_home, kit_home / "cloud" / "cloud.db"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # as the kit made them before
    local.LocalCloud().store.close()
    assert stat.S_IMODE(kit_home.stat().st_mode) == 0o700
    assert stat.S_IMODE((kit_home / "cloud" / "cloud.db").stat().st_mode) == 0o600


def test_status_after_kill_9_says_not_running(ports) -> None:
    up = cloud_up(*ports)
    assert up.wait(60) == 0, up.stderr.read()
    pid = service.service_state().pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while service.service_state() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    status = start_kit("cloud", "status")
    out, _ = status.communicate(timeout=60)
    assert "not running" in out
    again = cloud_up(*ports)  # and it starts again on the same ports
    assert again.wait(60) == 0, again.stderr.read()
    assert service.service_state().pid != pid


def test_a_pid_that_lives_on_is_not_taken_for_the_service(ports, kit_home: Path) -> None:
    # A crashed service's pid may be reused (or linger as a zombie): only its lock counts.
    local.cloud_dir().mkdir(parents=True, exist_ok=True)
    state = '{"pid": %d, "host": "127.0.0.1", "port": 1, "ws_port": 2, "broker_host": "x"}'
    (local.cloud_dir() / "service.json").write_text(state % os.getpid())
    assert service.service_state() is None


def test_two_starts_at_once_take_turns(ports) -> None:
    first, second = cloud_up(*ports), cloud_up(*ports)
    results = [(p.wait(90), p.stdout.read(), p.stderr.read()) for p in (first, second)]
    assert [status for status, _, _ in results] == [0, 0], results
    pid = service.service_state().pid
    for _, out, err in results:
        assert f"(process {pid})" in out and not err
    waited = [out for _, out, _ in results if "Another start of the local cloud" in out]
    assert len(waited) <= 1
    for out in waited:
        assert "is under way (process " in out and "waiting for it" in out


@pytest.mark.parametrize("pid", ["0", "1", "true", "-5", '"abc"', "null", "1.5", "1e20", "SLEEP"])
def test_a_damaged_service_file_never_signals_another_process(pid: str, capsys) -> None:
    from kit.cli import main

    local.cloud_dir().mkdir(parents=True, exist_ok=True)
    sleeper = subprocess.Popen(["sleep", "30"])
    holder = subprocess.Popen(  # a process that holds the service lock, as a service would
        [
            sys.executable,
            "-c",
            "import sys, time, fcntl; f = open(sys.argv[1], 'a+');"
            " fcntl.flock(f, fcntl.LOCK_EX); f.write('424242'); f.flush(); time.sleep(30)",
            str(local.cloud_dir() / "service.lock"),
        ]
    )
    try:
        time.sleep(0.5)
        state = '{"pid": %s, "host": "h", "port": 1, "ws_port": 2, "broker_host": "x"}'
        value = str(sleeper.pid) if pid == "SLEEP" else pid
        (local.cloud_dir() / "service.json").write_text(state % value)
        assert main(["cloud", "status"]) == 0
        assert main(["cloud", "down"]) == 0
        out = capsys.readouterr().out
        assert "not running" in out and "was not running" in out
        assert sleeper.poll() is None and holder.poll() is None  # nobody was signalled
    finally:
        sleeper.kill()
        holder.kill()


def test_a_stopped_child_of_another_process_counts_as_stopped() -> None:
    # A board started by a notebook's kernel is the kernel's child; when `kit stop` stops it
    # from a terminal, it stays a zombie until the kernel looks. It must count as stopped, or
    # `kit stop` waits out its whole timeout (it took 40 s).
    child = subprocess.Popen(["sleep", "30"])  # this process plays the kernel: it does not reap
    try:
        assert background.alive(child.pid)
        os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        proc_stat = Path(f"/proc/{child.pid}/stat")
        while ") Z " not in proc_stat.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ") Z " in proc_stat.read_text()  # a zombie now, still reachable by signal 0
        assert not background.alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_two_board_starts_at_once_leave_one_board_that_stop_finds(tmp_path) -> None:
    # Two kernels starting the same board: one runs, and nothing removes its state, so `kit
    # stop` finds and stops it and nothing is left holding the board's lock.
    starter = (
        "import sys; from kit.sim import board as b\n"
        "try:\n    print(b.start('race', instant_chip=True).pid)\n"
        "except Exception as error:\n    print('refused', error)\n"
    )
    env = {**os.environ, "KIT_HOME": os.environ["KIT_HOME"]}
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", starter], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    said = [p.communicate(timeout=60)[0].strip() for p in starts]
    running = [info.pid for info in vboard.running_boards() if info.name == "race"]
    assert len(running) == 1, said
    assert str(running[0]) in said, said
    assert vboard.stop("race")
    assert not background.alive(running[0])
    assert not locks.lock_held(vboard.managed("race").lock)
    assert vboard.running_boards() == []


def test_stop_never_ends_this_very_process() -> None:
    board = vboard.VirtualBoard("self").start()
    try:
        assert vboard.find("self").pid == os.getpid()
        with pytest.raises(ValueError, match="this very process"):
            vboard.stop("self")
    finally:
        board.close()
