"""`kit inspect`, `config-h`, `boards`, `csr`, `sim`: the board and what goes onto it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kit import arguments, board, certs, config_h, devices, settings, steps
from kit.board_ports import example_port
from kit.cli.inputs import (
    PASSWORD_VARIABLE,
    SLOT,
    is_stdin,
    output_file,
    read_text,
    wifi_password,
)
from kit.cli.parser import Command
from kit.errors import UsageError
from kit.places import write_private
from kit.printable import printable
from kit.sim import process as sim_process


def register(command: Command) -> None:
    """Add the board commands."""
    inspect = command(
        "inspect", cmd_inspect, "Describe a CSR or certificate (pasted text is fine)."
    )
    inspect.add_argument("file", help="a file holding the CSR or certificate, or - for stdin")

    cfg = command("config-h", cmd_config_h, "Write sketches/AWS/config.h for the AWS sketch.")
    cfg.add_argument("--ssid", required=True, help="WiFi network name (2.4 GHz, WPA2-Personal)")
    cfg.add_argument(
        "--device",
        help="fill broker, port, certificate and slot from this "
        "registered device (default: the current device)",
    )
    cfg.add_argument("--broker", help="MQTT broker host name (a URL is fine)")
    cfg.add_argument("--cert", help="the device certificate file, or - for stdin")
    cfg.add_argument(
        "--port", type=arguments.port, help=f"broker port (default {config_h.DEFAULT_PORT})"
    )
    cfg.add_argument("--slot", type=SLOT, help="ECCX08 key slot, 0-4 (default 0)")
    cfg.add_argument(
        "--led-pin",
        type=arguments.whole_number(0, 21),
        default=config_h.DEFAULT_LED_PIN,
        help=f"the LED's PWM pin (default {config_h.DEFAULT_LED_PIN})",
    )
    cfg.add_argument(
        "--local-ca",
        help="the CA file of a local broker (default: from the "
        "device record when its cloud is local)",
    )
    cfg.add_argument("--out", type=Path, help="where to write (default sketches/AWS/config.h)")
    cfg.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the WiFi password from stdin (else ${PASSWORD_VARIABLE}, else a hidden prompt)",
    )

    command("boards", cmd_boards, "List attached boards and running virtual boards.")

    csr = command("csr", cmd_csr, "Capture a CSR from the board's CSR sketch over serial.")
    csr.add_argument(
        "--port",
        help=f"the board's port, such as {example_port()} (`kit boards` lists them), or a URL "
        "(sim://default); default: the board `kit use` chose (the virtual board, started if it "
        "is not running, unless told otherwise)",
    )
    csr.add_argument("--name", help="device name (default: the chip's serial number)")
    csr.add_argument(
        "--slot",
        type=SLOT,
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
    sim_process.add_arguments(sim)


def cmd_inspect(args: argparse.Namespace) -> None:
    """Print the description of a CSR or certificate."""
    print(certs.load_any(read_text(args.file)).describe())


def cmd_config_h(args: argparse.Namespace) -> None:
    """Render config.h and write it atomically, 0600."""
    from_stdin = [name for name in (args.cert, args.local_ca) if is_stdin(name)]
    if len(from_stdin) + bool(args.password_stdin) > 1:
        raise UsageError(
            "Only one of --cert, --local-ca and the password can come from stdin. Save the "
            "certificate in a file and give its name to --cert (or --local-ca)."
        )
    out = output_file(args.out, "config.h")
    local_ca = read_text(args.local_ca) if args.local_ca else ""
    certificate = read_text(args.cert) if args.cert is not None else None
    record = devices.load(args.device) if certificate is None or args.broker is None else None
    rendered = steps.configure(
        args.ssid,
        wifi_password(args.password_stdin),
        record=record,
        certificate=certificate,
        broker=args.broker,
        port=args.port,
        slot=args.slot,
        led_pin=args.led_pin,
        local_ca=local_ca,
    )
    path = rendered.write(out)
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
        print(f"{printable(str(found))}  [{note}]")


def cmd_csr(args: argparse.Namespace) -> None:
    """Capture a CSR, showing the serial dialog as it happens on stderr."""
    out = output_file(args.out, "csr.pem")
    if args.name is not None:
        certs.validate_device_name(args.name)
    if args.port:
        device = args.port
        print(f"Talking to {printable(device)} ...", file=sys.stderr)
    else:
        chosen = settings.load()
        device, started = steps.capture_port(chosen, _ask_board if sys.stdin.isatty() else None)
        if started:
            print(started, file=sys.stderr)
        which = (
            "the virtual board the course's settings choose (`kit use auto` switches to a board "
            "on USB)"
            if chosen.virtual
            else "the course's board (`kit use` chooses another)"
        )
        print(f"Talking to {printable(device)}, {which} ...", file=sys.stderr)
    last = ["\n"]  # the last character shown, so the error starts on a line of its own

    def show(text: str) -> None:
        # The board's output as the serial monitor shows it, escapes made visible.
        text = printable(text.replace("\r", ""), keep="\n")
        print(text, end="", file=sys.stderr, flush=True)
        last[0] = text[-1:] or last[0]

    try:
        capture = board.capture_csr(
            device,
            name=args.name,
            slot=args.slot,
            lock=args.lock,
            new_key=not args.keep_key,
            on_output=show,
        )
    finally:
        if last[0] != "\n":
            print(file=sys.stderr)  # the dialog stopped mid-line
    if out:
        write_private(out, capture.csr.pem)
        print(f"Saved the CSR for {capture.csr.common_name} (slot {capture.slot}) to {out}.")
    else:
        print(capture.csr.pem, end="")


def _ask_board(boards: list[board.BoardPort]) -> board.BoardPort:
    """Ask which of several boards to use."""
    for number, found in enumerate(boards, 1):
        print(f"  {number}. {found}", file=sys.stderr)
    while True:
        choice = input(f"Which board (1-{len(boards)})? ").strip()
        if choice.isdigit() and 1 <= int(choice) <= len(boards):
            return boards[int(choice) - 1]


def cmd_sim(args: argparse.Namespace) -> int:
    """Run a virtual board until Ctrl+C; print its ports first, then its serial output."""
    return sim_process.run(args)
