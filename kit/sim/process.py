"""The virtual board as a process of its own: `python -m kit.sim` (what `kit sim` runs in the
foreground and what notebooks start in the background). It prints its ports, then everything its
firmware writes to the serial port, until SIGTERM or Ctrl+C."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kit import arguments, background, config_h
from kit.errors import FileError, KitError
from kit.sim import board as vboard
from kit.sim.aws_firmware import MISBEHAVIOURS, FirmwareSettings
from kit.sim.csr_sketch import FAILURES, VARIANTS, SketchSettings
from kit.sim.eccx08 import ChipTiming

CONFIG_LIMIT = 1024 * 1024  # a config.h is a few KB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The virtual board's options (shared by `kit sim` and `python -m kit.sim`)."""
    parser.add_argument("--board", default="default", help="board name (default: default)")
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="example",
        help="which CSR dialog it speaks (default: example)",
    )
    parser.add_argument("--fail", choices=FAILURES, help="make the sketch fail this way")
    parser.add_argument(
        "--reset", action="store_true", help="make the chip factory-new first (unlocked, no keys)"
    )
    parser.add_argument(
        "--socket-port", type=arguments.port_or_any, default=0, help="TCP port (default: any free)"
    )
    parser.add_argument("--instant-chip", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--firmware",
        choices=("csr", "aws"),
        default="csr",
        help="the CSR sketch (default) or the AWS firmware",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="the config.h the AWS firmware boots from (default sketches/AWS/config.h)",
    )
    parser.add_argument(
        "--interval",
        type=arguments.positive_number("seconds", "10", 86_400),
        default=10.0,
        help="seconds between readings for the AWS firmware (default 10)",
    )
    parser.add_argument(
        "--misbehave",
        choices=MISBEHAVIOURS,
        help="make the AWS firmware misbehave the way students' boards do",
    )
    parser.add_argument(
        "--pty",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the port as a pty too (default: on Linux only; the socket always)",
    )


def run(args: argparse.Namespace) -> int:
    """Run a virtual board until SIGTERM or Ctrl+C; print its ports first, then its output."""
    settings = SketchSettings(variant=args.variant, fail=args.fail)
    timing = ChipTiming.instant() if args.instant_chip else None
    if args.reset:
        vboard.chip(args.board).factory_reset()
    aws_config = None
    if args.firmware == "aws":
        aws_config = config_h.parse(_read_config(args.config or config_h.default_path()))
    device = vboard.VirtualBoard(
        args.board,
        settings,
        timing,
        args.socket_port,
        echo=_echo,
        aws_config=aws_config,
        firmware_settings=FirmwareSettings(interval=args.interval, misbehave=args.misbehave),
        use_pty=args.pty,
    )
    stopped = background.stop_requested(device.managed)  # kit stop, SIGTERM or Ctrl+C
    info = device.info
    firmware = (
        f"AWS firmware for {aws_config.device_name}"
        if aws_config
        else f"CSR sketch ({info.variant})"
    )
    print(
        f"Virtual MKR WiFi 1010 '{info.name}', chip {info.chip_serial}, "
        f"{'locked' if device.chip.locked else 'not locked'}, {firmware}"
    )
    if info.pty:
        print(f"  serial port: {info.pty}")
    print(f"  socket:      {info.socket_url}")
    print(f"  from Python: {info.url}")
    print("Stop it with Ctrl+C.", flush=True)
    with device:
        while not stopped.wait(0.5):  # a timeout: on Windows a bare wait() ignores Ctrl+C
            pass
    print("Virtual board stopped.")
    return 0


def _echo(data: bytes) -> None:
    """What the firmware prints, as it prints it."""
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def _read_config(path: Path) -> str:
    """The text of the config.h the firmware boots from, or a FileError that says what to do."""
    if not path.exists():
        raise FileError(f"There is no {path}: render it first (notebook 03, or `kit config-h`).")
    if not path.is_file() or path.stat().st_size > CONFIG_LIMIT:
        raise FileError(
            f"{path} is not a config.h file. Render it again (notebook 03, or `kit config-h`)."
        )
    return path.read_text(encoding="utf-8", errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m kit.sim`: run a virtual board; a KitError is one line on stderr."""
    parser = arguments.Parser(prog="python -m kit.sim", description=__doc__)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except KitError as error:
        print(f"{error.title}: {error}", file=sys.stderr)
        return 1
