"""Many virtual boards in one process: a class's demo fleet (`kit class provision --virtual`).

A virtual board as a process of its own costs tens of MB (an interpreter each); here each board
is only its chip, its config.h and its firmware (kit.sim.aws_firmware), beside the others.
`python -m kit.sim.fleet FOLDER [--interval S]` runs every board folder in FOLDER (each holding
chip/ and config.h) until SIGTERM; start() and stop() run it in the background.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kit import background, config_h
from kit.sim.aws_firmware import AwsFirmware, FirmwareSettings
from kit.sim.eccx08 import ChipTiming, VirtualEccx08

MODULE = "kit.sim.fleet"
PID_FILE = "fleet.pid"
LOG_FILE = "fleet.log"


def boards_in(folder: Path) -> list[Path]:
    """The board folders of a fleet (those with a config.h), by name."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if (path / "config.h").is_file())


def run(folder: Path, interval: float, stopped: threading.Event, timestamp: bool = False) -> int:
    """Run every board of `folder` until `stopped` (`timestamp`: each reading says when it
    was sent, for benchmarks); return how many ran."""
    firmwares = []
    for board in boards_in(folder):
        config = config_h.parse((board / "config.h").read_text(encoding="utf-8"))
        chip = VirtualEccx08(board / "chip", ChipTiming.instant())
        settings = FirmwareSettings(
            interval=interval, seed=zlib.crc32(board.name.encode()), timestamp=timestamp
        )
        firmware = AwsFirmware(config, chip, config.trusted_roots, lambda _line: None, settings)
        firmwares.append(firmware.start())
    print(f"{len(firmwares)} virtual board(s) running; stop with SIGTERM.", flush=True)
    try:
        stopped.wait()
    finally:
        # Side by side: each waits up to a second for its network thread, and one after
        # another 300 boards took minutes to stop.
        with ThreadPoolExecutor(max_workers=64) as pool:
            list(pool.map(lambda firmware: firmware.stop(), firmwares))
    return len(firmwares)


def start(folder: Path, interval: float, timestamp: bool = False) -> int:
    """Run the fleet in the background (again, if it ran: boards may have been added)."""
    stop(folder)
    command = [sys.executable, "-m", MODULE, str(folder), "--interval", str(interval)]
    command += ["--timestamp"] if timestamp else []
    process = background.spawn(command, folder / LOG_FILE)
    (folder / PID_FILE).write_text(f"{process.pid}\n")
    return process.pid


def running(folder: Path) -> int | None:
    """The fleet's process id, if it runs."""
    return background.noted_running(folder / PID_FILE, MODULE)


def stop(folder: Path) -> bool:
    """Stop the fleet of `folder`; whether one ran."""
    return background.stop_noted(folder / PID_FILE, MODULE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.sim.fleet", description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--timestamp", action="store_true", help="readings say when sent")
    args = parser.parse_args(argv)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C in a terminal: stop as SIGTERM does
        run(args.folder, args.interval, stopped, args.timestamp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
