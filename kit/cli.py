"""The `kit` command: the same steps as the notebooks, for a terminal.

Each command calls the library and presents its result; a KitError becomes its message on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from kit import __version__, board, certs, config_h
from kit.errors import KitError
from kit.places import checkout, write_private
from kit.sim import board as vboard
from kit.sim.csr_sketch import FAILURES, VARIANTS, SketchSettings
from kit.sim.eccx08 import ChipTiming

PASSWORD_VARIABLE = "KIT_WIFI_PASSWORD"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `kit` command; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except KitError as error:
        print(f"{error.title}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="kit",
        description="Give an Arduino MKR WiFi 1010 an X.509 identity and connect it to the cloud.",
    )
    parser.add_argument("--version", action="version", version=f"kit {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int | None], text: str):
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(run=run)
        return sub

    inspect = command(
        "inspect", cmd_inspect, "Describe a CSR or certificate (pasted text is fine)."
    )
    inspect.add_argument("file", help="a file holding the CSR or certificate, or - for stdin")

    cfg = command("config-h", cmd_config_h, "Write sketches/AWS/config.h for the AWS sketch.")
    cfg.add_argument("--ssid", required=True, help="WiFi network name (2.4 GHz, WPA2-Personal)")
    cfg.add_argument("--broker", required=True, help="MQTT broker host name (a URL is fine)")
    cfg.add_argument("--cert", required=True, help="the device certificate file, or - for stdin")
    cfg.add_argument("--port", type=int, help=f"broker port (default {config_h.DEFAULT_PORT})")
    cfg.add_argument("--slot", type=int, default=0, help="ECCX08 key slot, 0-4 (default 0)")
    cfg.add_argument("--out", type=Path, help="where to write (default sketches/AWS/config.h)")
    cfg.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the WiFi password from stdin (else ${PASSWORD_VARIABLE}, else a hidden prompt)",
    )

    command("boards", cmd_boards, "List attached boards and running virtual boards.")

    csr = command("csr", cmd_csr, "Capture a CSR from the board's CSR sketch over serial.")
    csr.add_argument("--port", help="port path or URL (sim://default); default: the only board")
    csr.add_argument("--name", help="device name (default: the chip's serial number)")
    csr.add_argument(
        "--slot",
        type=int,
        default=0,
        help="key slot 0-4 (default 0; Arduino Cloud "
        "also uses slot 0, so pick 1-4 if you use it too)",
    )
    csr.add_argument(
        "--lock",
        action="store_true",
        help="lock an unlocked chip: PERMANENT, needed once per board",
    )
    csr.add_argument(
        "--keep-key",
        action="store_true",
        help="reuse the key already in the slot instead of making a new one",
    )
    csr.add_argument("--out", type=Path, help="save the CSR here (default: print it)")

    sim = command("sim", cmd_sim, "Run a virtual MKR WiFi 1010 in the foreground.")
    sim.add_argument("--board", default="default", help="board name (default: default)")
    sim.add_argument(
        "--variant",
        choices=VARIANTS,
        default="example",
        help="which CSR dialog it speaks (default: example)",
    )
    sim.add_argument("--fail", choices=FAILURES, help="make the sketch fail this way")
    sim.add_argument(
        "--reset", action="store_true", help="make the chip factory-new first (unlocked, no keys)"
    )
    sim.add_argument("--socket-port", type=int, default=0, help="TCP port (default: any free)")
    sim.add_argument("--instant-chip", action="store_true", help=argparse.SUPPRESS)

    lab = command("lab", cmd_lab, "Open the course notebooks in JupyterLab.")
    lab.add_argument("--port", type=int, help="port for JupyterLab (default: its own choice)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    return parser


def cmd_inspect(args: argparse.Namespace) -> None:
    """Print the description of a CSR or certificate."""
    print(certs.load_any(_read_text(args.file)).describe())


def cmd_config_h(args: argparse.Namespace) -> None:
    """Render config.h and write it atomically, 0600."""
    if args.cert == "-" and args.password_stdin:
        raise KitError(
            "Only one of --cert and the password can come from stdin. Save the certificate "
            "in a file and give its name to --cert."
        )
    certificate = _read_text(args.cert)
    password = _wifi_password(args.password_stdin)
    rendered = config_h.render(
        args.ssid, password, args.broker, certificate, port=args.port, slot=args.slot
    )
    path = rendered.write(args.out)
    ignored = args.out is None
    for change in rendered.changes:
        print(f"Note: {change}.")
    config = rendered.config
    print(
        f"Wrote {path} for device {config.device_name}: "
        f"broker {config.broker}:{config.port}, key slot {config.slot}."
    )
    print(
        "It holds your WiFi password: it is readable only by you"
        + (" and git ignores it." if ignored else "; keep it out of git and shared folders.")
    )


def cmd_boards(args: argparse.Namespace) -> None:
    """Print every port with what is on it."""
    boards = board.find_boards()
    if not boards:
        print("No serial ports and no virtual boards. Plug a board in, or run `kit sim`.")
    for found in boards:
        note = {
            "supported": "ready" if found.mode == "sketch" else "bootloader mode: press reset once",
            "virtual": "virtual board",
            "unsupported": "not supported by the course",
            "unknown": "not an Arduino",
        }[found.kind]
        print(f"{found}  [{note}]")


def cmd_csr(args: argparse.Namespace) -> None:
    """Capture a CSR, showing the serial dialog as it happens on stderr."""
    if args.name is not None:
        certs.validate_device_name(args.name)
    device = args.port or board.choose_board(ask=_ask_board if sys.stdin.isatty() else None).device
    print(f"Talking to {device} ...", file=sys.stderr)
    try:
        capture = board.capture_csr(
            device,
            name=args.name,
            slot=args.slot,
            lock=args.lock,
            new_key=not args.keep_key,
            on_output=lambda text: print(text, end="", file=sys.stderr, flush=True),
        )
    finally:
        print(file=sys.stderr)  # the dialog may stop mid-line
    if args.out:
        write_private(args.out, capture.csr.pem)
        print(f"Saved the CSR for {capture.csr.common_name} (slot {capture.slot}) to {args.out}.")
    else:
        print(capture.csr.pem, end="")


def cmd_sim(args: argparse.Namespace) -> int:
    """Run a virtual board until Ctrl+C; print its ports first, then its serial output."""
    settings = SketchSettings(variant=args.variant, fail=args.fail)
    timing = ChipTiming.instant() if args.instant_chip else None
    if args.reset:
        vboard.chip(args.board).factory_reset()
    device = vboard.VirtualBoard(
        args.board,
        settings,
        timing,
        args.socket_port,
        echo=lambda data: sys.stdout.buffer.write(data) and sys.stdout.flush(),
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda *_: device.reset_button.set())
    with device:
        info = device.info
        print(
            f"Virtual MKR WiFi 1010 '{info.name}', chip {info.chip_serial}, "
            f"{'locked' if device.chip.locked else 'not locked'}, CSR sketch ({info.variant})"
        )
        if info.pty:
            print(f"  serial port: {info.pty}")
        print(f"  socket:      {info.socket_url}")
        print(f"  from Python: {info.url}")
        print("Stop it with Ctrl+C.", flush=True)
        try:
            while not stopped.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
    print("Virtual board stopped.")
    return 0


def _ask_board(boards: list[board.BoardPort]) -> board.BoardPort:
    """Ask which of several boards to use."""
    for number, found in enumerate(boards, 1):
        print(f"  {number}. {found}", file=sys.stderr)
    while True:
        choice = input(f"Which board (1-{len(boards)})? ").strip()
        if choice.isdigit() and 1 <= int(choice) <= len(boards):
            return boards[int(choice) - 1]


def cmd_lab(args: argparse.Namespace) -> int:
    """Start JupyterLab on notebooks/ and wait until it is stopped."""
    notebooks = checkout() / "notebooks"
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={notebooks}"]
    if args.port:
        command.append(f"--ServerApp.port={args.port}")
    if args.no_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers and CI run as root; JupyterLab refuses that unless told it is deliberate.
        command.append("--allow-root")
    print(f"Opening the course in JupyterLab ({notebooks}). Stop it with Ctrl+C.", flush=True)
    if os.name == "posix":
        # Become JupyterLab, so signals (Ctrl+C, a terminal closing) reach it directly.
        os.execv(sys.executable, command)
    return subprocess.call(command)


def _read_text(name: str) -> str:
    """The text of a file, or of stdin for '-', with a clear error for a missing file."""
    if name == "-":
        return sys.stdin.read()
    path = Path(name)
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise KitError(
            f"There is no file {path}. Check the name and the folder you are in."
        ) from None
    except IsADirectoryError:
        raise KitError(f"{path} is a folder; give the file inside it.") from None
    except PermissionError:
        raise KitError(f"{path} cannot be read (permission denied).") from None


def _wifi_password(from_stdin: bool) -> str:
    """The WiFi password from stdin, the environment, or a hidden prompt; never from argv."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if PASSWORD_VARIABLE in os.environ:
        return os.environ[PASSWORD_VARIABLE]
    if not sys.stdin.isatty():
        raise KitError(
            f"No WiFi password given. Use --password-stdin, set {PASSWORD_VARIABLE}, or run "
            "the command in a terminal to be asked for it."
        )
    return getpass.getpass("WiFi password (empty for an open network, not shown): ")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
