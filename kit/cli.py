"""The `kit` command: the same steps as the notebooks, for a terminal.

Each command calls the library and presents its result; a KitError becomes its message on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kit import __version__, arguments, board, certs, config_h, devices, telemetry
from kit.cloud import open_cloud
from kit.errors import FileError, KitError, UsageError
from kit.pem import PemBlock, der_kind
from kit.places import checkout, write_private
from kit.ports import MQTT_TLS_PORT, WEBSOCKET_TLS_PORT
from kit.printable import printable
from kit.sim import process as sim_process

PASSWORD_VARIABLE = "KIT_WIFI_PASSWORD"
# Far above any CSR, certificate or CA file: a bigger input is the wrong file (or /dev/zero).
READ_LIMIT = 1024 * 1024
SLOT = arguments.whole_number(0, 4)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `kit` command; return the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
        if not hasattr(args, "run"):
            parser.print_help()
            print("Command problem: give a command, such as `kit doctor`.", file=sys.stderr)
            return 1
        return args.run(args) or 0
    except UsageError as error:
        print(f"{error.title}: {_hide_values(str(error), argv, parser)}", file=sys.stderr)
        return 1
    except KitError as error:
        print(f"{error.title}: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a read-only folder, a name the system refuses
        where = f" {error.filename}" if error.filename else ""
        problem = FileError(
            f"Could not read or write{where}: {error.strerror or error}. Check the name, the "
            "folder's permissions and the free space, then try again."
        )
        print(f"{problem.title}: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return 130


def _hide_values(message: str, argv: list[str], parser: argparse.ArgumentParser) -> str:
    """The message with every word of the command line but command names blanked out."""
    # The parser already leaves values out; this catches a message it does not know.
    known = set(parser.get_default("commands") or ())
    for word in sorted(set(argv) - known, key=len, reverse=True):
        if len(word) >= 3 and not word.startswith("-") and word in message:
            message = message.replace(word, "…")
    return message


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = arguments.Parser(
        prog="kit",
        description="Give an Arduino MKR WiFi 1010 an X.509 identity and connect it to the cloud.",
    )
    parser.add_argument("--version", action="version", version=f"kit {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    names: list[str] = []
    parser.set_defaults(commands=names)

    def command(name: str, run: Callable[[argparse.Namespace], int | None], text: str):
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(run=run, command=name)
        names.append(name)
        return sub

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
    csr.add_argument("--port", help="port path or URL (sim://default); default: the only board")
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

    watch = command("watch", cmd_watch, "Print a thing's messages as they arrive (local cloud).")
    watch.add_argument(
        "thing", nargs="?", help="the thing (default: the current device; 'all' for every thing)"
    )

    led = command("led", cmd_led, "Set a thing's LED brightness, 0-100 (local cloud).")
    led.add_argument("thing", help="the thing")
    led.add_argument(
        "value", type=arguments.whole_number(0, 100), help="brightness in percent, 0-100"
    )

    def cloud_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--cloud",
            choices=("local", "aws"),
            default="local",
            help="which cloud (default: local)",
        )
        sub.add_argument("--profile", help="AWS profile (default: the standard chain)")
        sub.add_argument("--region", help="AWS region (default: the profile's)")

    reg = command("register", cmd_register, "Register a CSR: a thing, its certificate, the broker.")
    reg.add_argument("csr", help="the CSR file (pasted text is fine), or - for stdin")
    reg.add_argument("--out", type=Path, help="also copy certificate.pem and ca.pem here")
    reg.add_argument("--slot", type=SLOT, help="the key slot the CSR was made in (default 0)")
    cloud_options(reg)

    things = command("things", cmd_things, "List registered things.")
    cloud_options(things)

    unreg = command("unregister", cmd_unregister, "Remove a thing and its certificates.")
    unreg.add_argument("thing", nargs="?", help="the thing (default: the current device)")
    unreg.add_argument("--all", action="store_true", help="remove every thing (asks first)")
    unreg.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    cloud_options(unreg)

    cloud = command("cloud", cmd_cloud, "Run the local cloud: kit cloud up|down|status.")
    cloud.add_argument("action", choices=("up", "down", "status", "run"))
    cloud.add_argument(
        "--port",
        type=arguments.port_or_any,
        default=MQTT_TLS_PORT,
        help=f"MQTT/TLS port (default {MQTT_TLS_PORT})",
    )
    cloud.add_argument(
        "--ws-port",
        type=arguments.port_or_any,
        default=WEBSOCKET_TLS_PORT,
        help=f"WebSocket/TLS port (default {WEBSOCKET_TLS_PORT})",
    )
    cloud.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    cloud.add_argument(
        "--keep-days",
        type=arguments.positive_number("days", "30", 100_000),
        default=30,
        help="how many days the recorder keeps messages (default 30)",
    )
    cloud.add_argument(
        "--listen",
        action="store_true",
        help="serve boards on the LAN too (listen on every address)",
    )
    cloud.add_argument(
        "--broker-host",
        type=arguments.host_name,
        help="the DNS name boards use (default: localhost, or <hostname>.local with --listen)",
    )

    doctor = command(
        "doctor", cmd_doctor, "Check this computer for the course (boards, cloud, tools)."
    )
    doctor.add_argument(
        "--repair",
        action="store_true",
        help="set damaged files in the data folder aside (renamed, never deleted) and start afresh",
    )
    demo = command("demo", cmd_demo, "Run the whole course headless; results in build/.")
    demo.add_argument("--build", type=Path, help="where to write (default: build/ in the checkout)")

    use = command("use", cmd_use, "Choose the board and the cloud for the course.")
    use.add_argument("board", nargs="?", help="'virtual', 'auto' (the attached board) or a port")
    use.add_argument("--cloud", choices=("local", "aws"), help="which cloud (default: unchanged)")
    use.add_argument("--profile", help="AWS profile")
    use.add_argument("--region", help="AWS region")

    lab = command("lab", cmd_lab, "Open the course notebooks in JupyterLab.")
    lab.add_argument(
        "--port", type=arguments.port, help="port for JupyterLab (default: its own choice)"
    )
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    return parser


def cmd_inspect(args: argparse.Namespace) -> None:
    """Print the description of a CSR or certificate."""
    print(certs.load_any(_read_text(args.file)).describe())


def cmd_config_h(args: argparse.Namespace) -> None:
    """Render config.h and write it atomically, 0600."""
    from_stdin = [name for name in (args.cert, args.local_ca) if _is_stdin(name)]
    if len(from_stdin) + bool(args.password_stdin) > 1:
        raise UsageError(
            "Only one of --cert, --local-ca and the password can come from stdin. Save the "
            "certificate in a file and give its name to --cert (or --local-ca)."
        )
    out = _output_file(args.out, "config.h")
    broker, port, slot = args.broker, args.port, args.slot
    local_ca = _read_text(args.local_ca) if args.local_ca else ""
    if args.cert is None or args.broker is None:
        record = devices.load(args.device)
        certificate = record.certificate_pem if args.cert is None else _read_text(args.cert)
        broker = broker or record.broker_host
        port = record.broker_port if port is None and args.broker is None else port
        slot = record.slot if slot is None else slot
        if record.cloud == "local" and not local_ca:
            local_ca = record.ca_pem  # the board must trust the local CA explicitly
    else:
        certificate = _read_text(args.cert)
    password = _wifi_password(args.password_stdin)
    rendered = config_h.render(
        args.ssid,
        password,
        broker,
        certificate,
        port=port,
        slot=slot or 0,
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
    out = _output_file(args.out, "csr.pem")
    if args.name is not None:
        certs.validate_device_name(args.name)
    device = args.port or board.choose_board(ask=_ask_board if sys.stdin.isatty() else None).device
    print(f"Talking to {printable(device)} ...", file=sys.stderr)
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


def cmd_sim(args: argparse.Namespace) -> int:
    """Run a virtual board until Ctrl+C; print its ports first, then its serial output."""
    return sim_process.run(args)


def cmd_watch(args: argparse.Namespace) -> None:
    """Print each message for a thing (or all) until Ctrl+C."""
    from kit.cloud.local import LocalCloud, require_service

    require_service()
    thing = None if args.thing == "all" else (args.thing or devices.current_name())

    def show(event: telemetry.Event) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        thing = printable(event.thing)
        if isinstance(event, telemetry.Reading):
            print(
                f"{stamp} {thing}: {event.temperature:.1f} F, {event.humidity:.0f} %",
                flush=True,
            )
        elif isinstance(event, telemetry.LedState):
            print(f"{stamp} {thing}: LED at {event.value} %", flush=True)
        else:
            print(
                f"{stamp} {thing}: rejected ({printable(event.reason)}): {event.payload[:60]!r}",
                flush=True,
            )

    with telemetry.Telemetry(LocalCloud().observer(), thing, on_event=show):
        print(f"Watching {thing or 'every thing'}; stop with Ctrl+C.", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def cmd_led(args: argparse.Namespace) -> None:
    """Send one LED command and wait for the device's answer on led/state."""
    from kit.cloud.local import LocalCloud, require_service

    require_service()
    telemetry.check_brightness(args.value)
    with telemetry.Telemetry(LocalCloud().observer(), args.thing) as watch:
        watch.led(args.thing, args.value)
        deadline = time.monotonic() + 5
        while watch.led_state(args.thing) != args.value and time.monotonic() < deadline:
            time.sleep(0.05)
        state = watch.led_state(args.thing)
    if state == args.value:
        print(f"{args.thing}: LED at {state} %.")
    else:
        print(f"Sent {args.value} % to {args.thing}; the device has not answered (is it online?).")


def _ask_board(boards: list[board.BoardPort]) -> board.BoardPort:
    """Ask which of several boards to use."""
    for number, found in enumerate(boards, 1):
        print(f"  {number}. {found}", file=sys.stderr)
    while True:
        choice = input(f"Which board (1-{len(boards)})? ").strip()
        if choice.isdigit() and 1 <= int(choice) <= len(boards):
            return boards[int(choice) - 1]


def cmd_register(args: argparse.Namespace) -> None:
    """Register a CSR and write the device record."""
    out = _output_folder(args.out)
    csr = certs.load_csr(_read_text(args.csr))
    cloud = open_cloud(args.cloud, profile=args.profile, region=args.region)
    registration = cloud.register(csr, slot=args.slot)
    verb = "Registered" if registration.created else "Already registered:"
    print(f"{verb} {registration.thing} in the {cloud.name} cloud.")
    print(f"Broker: {registration.broker_host}:{registration.broker_port}")
    print(f"Certificate id: {registration.certificate_id}")
    if out:
        cert, ca = registration.write(out)
        print(f"Wrote {cert} and {ca}.")


def cmd_things(args: argparse.Namespace) -> None:
    """List the registered things."""
    names = open_cloud(args.cloud, profile=args.profile, region=args.region).things()
    print("\n".join(map(printable, names)) if names else "No things registered yet.")


def cmd_unregister(args: argparse.Namespace) -> int:
    """Remove one thing (or all) with its certificates."""
    cloud = open_cloud(args.cloud, profile=args.profile, region=args.region)
    targets = cloud.things() if args.all else [args.thing or devices.current_name()]
    if not targets:
        print("No things registered.")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("Add --yes to confirm removing: " + ", ".join(targets))
        answer = input(f"Remove {', '.join(targets)} from the {cloud.name} cloud? [y/N] ")
        if not answer.lower().startswith("y"):
            print("Nothing removed.")
            return 1
    for thing in targets:
        cloud.unregister(thing)
        print(f"Removed {thing}.")
    if args.all and hasattr(cloud, "remove_policy_if_unused"):
        cloud.remove_policy_if_unused()
    return 0


def cmd_cloud(args: argparse.Namespace) -> None:
    """Run, start, stop or describe the local cloud."""
    from kit.cloud import local

    host = "0.0.0.0" if args.listen else args.host
    if args.action == "run":
        local.run_service(host, args.port, args.ws_port, args.broker_host, args.keep_days)
    elif args.action == "up":
        state = local.start_service(
            host,
            args.port,
            args.ws_port,
            args.broker_host,
            args.keep_days,
            progress=lambda line: print(line, flush=True),
        )
        print(_running(state))
        print(f"Log: {local.cloud_dir() / 'broker.log'}")
    elif args.action == "down":
        print(
            "Stopped the local cloud."
            if local.stop_service()
            else "The local cloud was not running."
        )
    else:
        state = local.service_state()
        if state is None:
            print("The local cloud is not running. Start it with `kit cloud up`.")
        else:
            print(_running(state))


def _running(state) -> str:
    """The line that says where the local cloud runs."""
    return (
        f"The local cloud runs (process {state.pid}): MQTT/TLS on "
        f"{printable(state.broker_host)}:{state.port}, WebSocket/TLS on port {state.ws_port}."
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the readiness report."""
    from kit import doctor, repair

    if args.repair:
        done = repair.repair()
        for step in done:
            print(f"Set aside: {step.problem.split(' is damaged')[0]} (kept as {step.kept}).")
        print("Repaired the data folder." if done else "Nothing in the data folder is damaged.")
    report = doctor.run()
    print(report.text())
    if report.ok:
        return 0
    waiting = sum(not check.ok for check in report.checks)
    print(
        f"Doctor problem: {waiting} check(s) need attention: follow the advice under each !! line.",
        file=sys.stderr,
    )
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the course headless."""
    from kit import demo

    return demo.run(args.build, progress=lambda line: print(line, flush=True))


def cmd_use(args: argparse.Namespace) -> None:
    """Save which board and cloud the course uses."""
    from kit import course

    chosen = course.use(args.board, args.cloud, args.profile or "", args.region or "")
    print(f"The course uses board {chosen.board} and the {chosen.cloud} cloud.")


def cmd_lab(args: argparse.Namespace) -> int:
    """Start JupyterLab on notebooks/ and wait until it is stopped."""
    from kit import settings
    from kit.cloud import local

    notebooks = checkout() / "notebooks"
    if settings.load().cloud == "local":
        state = local.start_service(**local.ports_from_environment())
        print(f"The local cloud runs on {state.broker_host}:{state.port}.")
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
    """The text of a file, or of stdin for '-', with a clear error for anything unreadable."""
    if name == "-":
        data, where = sys.stdin.buffer.read(READ_LIMIT + 1), "The text on stdin"
    else:
        where = f"The file {name}"
        try:
            with open(name, "rb") as source:
                data = source.read(READ_LIMIT + 1)
        except FileNotFoundError:
            raise FileError(
                f"There is no file {name}. Check the name and the folder you are in."
            ) from None
        except IsADirectoryError:
            raise FileError(f"{name} is a folder; give the file inside it.") from None
        except OSError as error:
            raise FileError(
                f"{name} cannot be read ({error.strerror or error}). Give a text file that "
                "holds the CSR or certificate."
            ) from None
    if len(data) > READ_LIMIT:
        raise FileError(
            f"{where} is over {READ_LIMIT // 2**20} MB: not a CSR, certificate or CA file. Give "
            "the .pem file (a few KB), or paste only the block."
        )
    if data[:1] == b"\x30" and der_kind(data):
        return PemBlock(der_kind(data), data).pem  # binary DER, as some tools save it
    # Stray bytes around a PEM block (an e-mail's encoding) do not matter to the paste cleaner.
    return data.decode("utf-8", errors="replace")


def _is_stdin(name: str | None) -> bool:
    """Whether a file argument reads stdin ('-', or a name for it such as /dev/stdin)."""
    return name is not None and (name == "-" or os.path.normpath(name) in _STDIN_NAMES)


# Names, not resolved paths: /dev/stdin resolves to whatever stdin is (/dev/null, a pipe).
_STDIN_NAMES = {"/dev/stdin", "/proc/self/fd/0", "/dev/fd/0"}


def _output_file(path: Path | None, example: str) -> Path | None:
    """An --out file path, checked before any work: not a folder, in a folder that exists."""
    if path is None:
        return None
    _check_name(path)
    if path.exists() and not path.is_dir() and not path.is_file():
        raise FileError(
            f"--out {path} is a device or pipe, not a file. Give the name of a file to write."
        )
    if path.is_dir():
        raise FileError(
            f"--out {path} is a folder; give a file name in it, such as {path / example}."
        )
    if not path.parent.is_dir():
        raise FileError(
            f"--out {path}: the folder {path.parent} does not exist. Create it first, or give "
            "a file in a folder that exists."
        )
    return path


def _check_name(path: Path) -> None:
    """A path the operating system can look up (not too long, no NUL)."""
    try:
        path.exists()
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or "not a usable file name"
        raise FileError(f"--out: {reason}. Give a shorter path to a file.") from None


def _output_folder(path: Path | None) -> Path | None:
    """An --out folder path: an existing folder, or a new one in a folder that exists."""
    if path is None:
        return None
    _check_name(path)
    if path.exists() and not path.is_dir():
        raise FileError(f"--out {path} is a file; give a folder (it is made if it is missing).")
    if not path.parent.is_dir():
        raise FileError(
            f"--out {path}: the folder {path.parent} does not exist. Create it first, or give "
            "a folder inside one that exists."
        )
    return path


def _wifi_password(from_stdin: bool) -> str:
    """The WiFi password from stdin, the environment, or a hidden prompt; never from argv."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:  # end of input, not an empty line: nothing was sent
            raise UsageError(
                "--password-stdin: stdin ended before the password line. Send the password "
                "followed by Enter (an empty line for an open network)."
            )
        return line.rstrip("\r\n")
    if PASSWORD_VARIABLE in os.environ:
        return os.environ[PASSWORD_VARIABLE]
    if not sys.stdin.isatty():
        raise UsageError(
            f"No WiFi password given. Use --password-stdin, set {PASSWORD_VARIABLE}, or run "
            "the command in a terminal to be asked for it."
        )
    return getpass.getpass("WiFi password (empty for an open network, not shown): ")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
