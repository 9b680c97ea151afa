"""The `kit` command: the same steps as the notebooks, for a terminal.

Each command calls the library and presents its result; a KitError becomes its message on
stderr and exit status 1, never a traceback. The commands live in modules by what they touch:
`device` (the board and config.h), `cloud` (registration and the local cloud), `course`
(settings, doctor, demo, lab); `inputs` reads what a person names, `parser` is the shared
vocabulary.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kit import __version__, arguments
from kit.cli import classroom, cloud, course, device
from kit.cli.parser import command_adder
from kit.errors import FileError, KitError, UsageError


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `kit` command; return the exit status."""
    _never_fail_on_text()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as error:  # the parser's own: it may not know which words are values
        print(f"{error.title}: {_hide_values(str(error), argv, parser)}", file=sys.stderr)
        return 1
    if not hasattr(args, "run"):
        parser.print_help()
        print("Command problem: give a command, such as `kit doctor`.", file=sys.stderr)
        return 1
    try:
        return args.run(args) or 0
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
    command = command_adder(parser)
    for group in (device, cloud, course, classroom):
        group.register(command)
    return parser


def _never_fail_on_text() -> None:
    """Write what the console cannot show as a replacement, not a crash: on Windows a piped
    `kit` writes in the ANSI code page (cp1252), which has no "→" or "✓" (a file name may)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # a test's StringIO has none
        if reconfigure is not None:
            reconfigure(errors="replace")
