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
from collections.abc import Callable, Sequence
from pathlib import Path

from kit import __version__, certs, config_h
from kit.errors import KitError
from kit.places import checkout

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
