"""What every command module shares: how a command is added to the `kit` parser."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Protocol


class Command(Protocol):
    """Adds one command: its name, the function that runs it, and its one-line help."""

    def __call__(
        self, name: str, run: Callable[[argparse.Namespace], int | None], text: str
    ) -> argparse.ArgumentParser: ...


def command_adder(parser: argparse.ArgumentParser) -> Command:
    """A `command(name, run, text)` function that adds subcommands to `parser`."""
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    names: list[str] = []
    parser.set_defaults(commands=names)  # names a usage message may show as they are

    def command(
        name: str, run: Callable[[argparse.Namespace], int | None], text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(run=run, command=name)
        names.append(name)
        return sub

    return command
