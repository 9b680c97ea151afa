"""A virtual MKR WiFi 1010: one process per named board, its chip, its serial port, its sketch.

A board's files live in KIT_HOME/boards/<name>/: the chip (serial number, lock, slot keys 0600),
board.json while it runs (pid and ports, so `sim://<name>` and other processes find it), the
serial log (everything the sketch printed) and the process log. A second start of a running
board is refused: a real board cannot be plugged in twice.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from kit import background, locks
from kit.config_h import SketchConfig
from kit.errors import DamagedFileError, KitError, VirtualBoardError
from kit.names import windows_reserved
from kit.places import kit_home, open_private, private_dir, read_json
from kit.sim.aws_firmware import AwsFirmware, FirmwareSettings
from kit.sim.csr_sketch import CsrSketch, Failure, Halt, Reset, SketchSettings, Variant
from kit.sim.eccx08 import ChipTiming, VirtualEccx08
from kit.sim.serial_port import PortClosed, VirtualSerialPort

DEFAULT_BOARD = "default"


@dataclass(frozen=True)
class BoardInfo:
    """A running virtual board, as other processes find it."""

    name: str
    pid: int
    socket_port: int
    pty: str | None
    firmware: str
    variant: str
    fail: str | None
    chip_serial: str

    @property
    def url(self) -> str:
        """The pyserial URL that opens this board's port from any process: sim://<name>."""
        return f"sim://{self.name}"

    @property
    def socket_url(self) -> str:
        return f"socket://127.0.0.1:{self.socket_port}"

    @property
    def serial_log(self) -> Path:
        """Everything the board printed on its serial port."""
        return board_dir(self.name) / "serial.log"


def board_dir(name: str) -> Path:
    """The folder that holds one virtual board's chip and logs."""
    if not name or not all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
        raise VirtualBoardError(
            f"'{name}' cannot be a virtual board name: use letters, digits, '-' and '_'."
        )
    if windows_reserved(name):
        raise VirtualBoardError(
            f"'{name}' cannot be a virtual board name: Windows keeps it for a device (like CON, "
            f"NUL and COM1). Add to it, such as '{name}-board'."
        )
    root = kit_home() / "boards"
    # Windows and macOS do not tell 'Lab' from 'lab': one board folder for both would mix chips.
    others = [path.name for path in root.iterdir()] if root.is_dir() else []
    twins = [other for other in others if other.lower() == name.lower() and other != name]
    if twins:
        raise VirtualBoardError(
            f"'{name}' differs from the virtual board '{twins[0]}' only in upper and lower case, "
            f"which Windows and macOS take for one folder. Use '{twins[0]}', or another name."
        )
    return root / name


def chip(name: str = DEFAULT_BOARD, timing: ChipTiming | None = None) -> VirtualEccx08:
    """The virtual chip of a board (it exists whether or not the board runs)."""
    return VirtualEccx08(board_dir(name) / "chip", timing)


def managed(name: str) -> background.Managed:
    """The board process's lock, state (board.json), log and requests."""
    return background.Managed(board_dir(name), "board", "process.log")


def running_boards() -> list[BoardInfo]:
    """Every virtual board whose process is alive."""
    root = kit_home() / "boards"
    boards = []
    for state in sorted(root.glob("*/board.json")) if root.exists() else []:
        info = _info(background.running(background.Managed(state.parent, "board")))
        if info is not None:
            boards.append(info)
    return boards


def find(name: str = DEFAULT_BOARD) -> BoardInfo:
    """The running board called `name`, or an error that says how to start it."""
    info = _info(background.running(managed(name)))
    if info is None:
        raise VirtualBoardError(
            f"The virtual board '{name}' is not running. Start it: course.start() in notebook 00 "
            f"(or `kit sim --board {name}` in a terminal)."
        )
    return info


def start(
    name: str = DEFAULT_BOARD,
    *,
    variant: Variant = "example",
    fail: Failure | None = None,
    reset_chip: bool = False,
    instant_chip: bool = False,
    config: Path | None = None,
    interval: float = 10.0,
    misbehave: str | None = None,
    timeout: float = 30.0,
) -> BoardInfo:
    """Start a virtual board in the background (it outlives the notebook kernel).

    With `config` (a rendered config.h) it runs the AWS firmware, otherwise the CSR sketch. A
    running board with other settings is re-flashed: stopped and started again.
    """
    firmware = "csr" if config is None else "aws"
    with contextlib.suppress(VirtualBoardError):
        current = find(name)
        same = (current.variant, current.fail, current.firmware) == (variant, fail, firmware)
        if same and firmware == "csr" and not reset_chip:
            return current
        stop(name)
    private_dir(board_dir(name))
    # The board's own entry point: a background process never runs through the CLI.
    command = [sys.executable, "-m", "kit.sim", "--board", name, "--variant", variant]
    command += ["--fail", fail] if fail else []
    command += ["--reset"] if reset_chip else []
    command += ["--instant-chip"] if instant_chip else []
    if config is not None:
        command += ["--firmware", "aws", "--config", str(config), "--interval", str(interval)]
        command += ["--misbehave", misbehave] if misbehave else []
    state = background.launch(
        managed(name),
        command,
        timeout,
        lambda reason: VirtualBoardError(f"The virtual board '{name}' did not start: {reason}"),
    )
    info = _info(state)
    assert info is not None, state  # the board publishes a BoardInfo
    return info


def stop(name: str = DEFAULT_BOARD, timeout: float = 10.0) -> bool:
    """Stop a running virtual board; return whether one was running."""
    return background.stop(managed(name), timeout)


def press_reset(name: str = DEFAULT_BOARD) -> None:
    """Press the virtual board's reset button: its sketch starts again."""
    find(name)  # says how to start it, if it is not running
    background.request(managed(name), "reset")


class VirtualBoard:
    """A board running in this process: a chip, a serial port and the CSR sketch."""

    def __init__(
        self,
        name: str = DEFAULT_BOARD,
        settings: SketchSettings | None = None,
        timing: ChipTiming | None = None,
        socket_port: int = 0,
        echo: Callable[[bytes], None] | None = None,
        aws_config: SketchConfig | None = None,
        firmware_settings: FirmwareSettings | None = None,
        use_pty: bool | None = None,
    ) -> None:
        """A board flashed with the CSR sketch, or with the AWS firmware when `aws_config` is
        given (the values of a rendered config.h, whose roots its TLS trusts as the sketch's)."""
        self.name = name
        self.settings = settings or SketchSettings()
        self.aws_config = aws_config
        self.firmware_settings = firmware_settings or FirmwareSettings()
        self.firmware: AwsFirmware | None = None
        self.folder = board_dir(name)
        private_dir(self.folder)
        self.managed = managed(name)
        self._lock_file = _take_lock(self.managed, name)
        self.chip = VirtualEccx08(self.folder / "chip", timing)
        self.port = VirtualSerialPort(socket_port, use_pty)  # a pty by default on Linux only
        self.reset_button = threading.Event()
        self._stop = threading.Event()
        self._echo = echo
        self._log = open_private(self.folder / "serial.log")
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"board-{name}")
        if aws_config is not None:
            self.firmware = AwsFirmware(
                aws_config,
                self.chip,
                aws_config.trusted_roots,
                self._serial,
                self.firmware_settings,
            )
        self.info = BoardInfo(
            name=name,
            pid=os.getpid(),
            socket_port=self.port.socket_port,
            pty=self.port.pty_path,
            firmware="aws" if aws_config is not None else "csr",
            variant=self.settings.variant,
            fail=self.settings.fail,
            chip_serial=self.chip.serial_number,
        )

    def start(self) -> VirtualBoard:
        """Power on: publish where the port is, then run the sketch in a thread."""
        background.publish(self.managed, asdict(self.info))
        background.on_request(self.managed, "reset", self.reset_button.set, until=self._stop)
        self._thread.start()
        return self

    def close(self) -> None:
        """Power off."""
        self._stop.set()
        self.port.close()
        self._thread.join(timeout=5)
        state = self.managed.state_file
        info = _read_info(state)
        if info is not None and info.pid == os.getpid():
            state.unlink(missing_ok=True)
        self._log.close()
        if self._lock_file is not None:
            self._lock_file.close()

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serial(self, text: str) -> None:
        """What the firmware prints: to the serial log and to a host that has the port open."""
        data = text.encode("utf-8")
        self._write_log(data)
        self.port.write(data)

    def _write_log(self, data: bytes) -> None:
        self._log.write(data)
        if self._echo:
            self._echo(data)

    def _run(self) -> None:
        """Run the sketch; after it halts, a reset (or the host opening the port) restarts it."""
        if self.aws_config is not None:
            self._run_aws()
            return
        while not self._stop.is_set():
            self.reset_button.clear()
            self.port.drain()
            sketch = CsrSketch(
                self.port, self.chip, self.settings, self.reset_button, self._write_log
            )
            try:
                sketch.setup()
            except Reset:
                continue
            except PortClosed:
                return
            except Halt:
                # A halted sketch waits for the reset button. Opening the port again counts as
                # pressing it, so a student can simply run the capture again.
                opened = self.port.open_count
                while not self._stop.is_set() and not self.reset_button.is_set():
                    if self.port.open_count != opened:
                        break
                    time.sleep(0.02)

    def _run_aws(self) -> None:
        """The AWS firmware: runs until power-off (it reconnects by itself)."""
        assert self.firmware is not None
        try:
            self.firmware.start()
        except KitError as error:
            self._serial(f"ECCX08: {error}\r\n")
            return
        self._stop.wait()
        self.firmware.stop()


def _take_lock(board: background.Managed, name: str) -> TextIO:
    """Hold an exclusive lock for the board's lifetime; refuse a second start."""
    handle = background.claim(board, wait=1.0)
    if handle is None:
        raise VirtualBoardError(_already_running(name, locks.read_pid(board.lock)))
    return handle


def _already_running(name: str, pid: int | None) -> str:
    where = f" (process {pid})" if pid else ""
    return (
        f"The virtual board '{name}' is already running{where}. Use it as it is, stop it first "
        f"(Ctrl+C in its terminal, or kit.sim.board.stop('{name}')), or start another one with "
        "--board OTHER_NAME."
    )


def _read_info(path: Path) -> BoardInfo | None:
    try:
        return _info(read_json(path, ""))
    except DamagedFileError:
        return None


def _info(values: dict[str, object] | None) -> BoardInfo | None:
    """A board's state as BoardInfo, None if it is not one."""
    try:
        info = BoardInfo(**(values or {}))  # type: ignore[arg-type]
    except TypeError:
        return None
    return info if isinstance(info.pid, int) and not isinstance(info.pid, bool) else None
