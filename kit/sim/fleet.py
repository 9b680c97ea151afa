"""Many virtual boards in one process: a class's demo fleet (`kit class provision --virtual`).

A virtual board as a process of its own costs tens of MB (an interpreter each); here each board
is only its chip, its config.h and its firmware (kit.sim.aws_firmware), beside the others.
`python -m kit.sim.fleet FOLDER [--interval S]` runs every board folder in FOLDER (each holding
chip/ and config.h) until asked to stop; start() and stop() run it in the background.
"""

from __future__ import annotations

import argparse
import sys
import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kit import background, config_h, locks
from kit.errors import VirtualBoardError
from kit.sim.aws_firmware import AwsFirmware, FirmwareSettings
from kit.sim.eccx08 import ChipTiming, VirtualEccx08

MODULE = "kit.sim.fleet"


def managed(folder: Path) -> background.Managed:
    """The fleet process's lock, state, log (fleet.log) and requests, in its folder."""
    return background.Managed(folder, "fleet")


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
    said = f"{len(firmwares)} virtual board(s) running; course.stop() or `kit stop` stops them."
    print(said, flush=True)
    try:
        while not stopped.wait(0.5):  # a timeout: on Windows a bare wait() ignores Ctrl+C
            pass
    finally:
        # Side by side: each waits up to a second for its network thread, and one after
        # another 300 boards took minutes to stop.
        with ThreadPoolExecutor(max_workers=64) as pool:
            list(pool.map(lambda firmware: firmware.stop(), firmwares))
    return len(firmwares)


def start(folder: Path, interval: float, timestamp: bool = False, timeout: float = 60.0) -> int:
    """Run the fleet in the background (again, if it ran: boards may have been added); return
    its process id once every board runs."""
    stop(folder)
    command = [sys.executable, "-m", MODULE, str(folder), "--interval", str(interval)]
    command += ["--timestamp"] if timestamp else []
    state = background.launch(
        managed(folder),
        command,
        timeout,
        lambda reason: VirtualBoardError(f"The class's virtual boards did not start: {reason}"),
    )
    return int(state["pid"])


def running(folder: Path) -> int | None:
    """The fleet's process id, if it runs."""
    state = background.running(managed(folder))
    return None if state is None else int(state["pid"])


def stop(folder: Path) -> bool:
    """Stop the fleet of `folder`; whether one ran."""
    return background.stop(managed(folder))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.sim.fleet", description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--timestamp", action="store_true", help="readings say when sent")
    args = parser.parse_args(argv)
    fleet = managed(args.folder)
    lock = background.claim(fleet, wait=2.0)  # held while this process lives
    if lock is None:
        print(f"The boards of {args.folder} already run (process {locks.read_pid(fleet.lock)}).")
        return 1
    stopped = background.stop_requested(fleet)  # kit stop, SIGTERM or Ctrl+C
    with background.serving(fleet, {"boards": len(boards_in(args.folder))}):
        run(args.folder, args.interval, stopped, args.timestamp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
