"""The `kit` command's argument parser: no abbreviations, and no argument values in its errors.

argparse accepts `--password` as an abbreviation of `--password-stdin` and prints what it could
not parse ("unrecognized arguments: --password secret123"). A student's password typed in the
wrong place must not end up on a projected screen, so this parser takes whole option names only
and its messages name options, never the values given to them.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar, overload

from kit.errors import UsageError
from kit.ports import read_port

_N = TypeVar("_N")

_OPTION = re.compile(r"--?[A-Za-z][A-Za-z0-9-]*")
# argparse's messages that quote a value, rewritten without it.
_REWRITES = (
    (
        re.compile(r"invalid choice: .* \(choose from ([^()]*)\)$"),
        r"invalid choice (choose from \1)",
    ),
    (re.compile(r"unknown parser .* \(choices: ([^()]*)\)$"), r"unknown command (choose from \1)"),
    (re.compile(r"invalid (\S+) value: .*$"), r"invalid \1 value"),
    (re.compile(r"ignored explicit argument .*$"), "takes no value"),
    (re.compile(r"ambiguous option: (--?[A-Za-z0-9-]*)\S* could"), r"ambiguous option \1 could"),
)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError with a message free of argument values."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    # The overloads argparse.ArgumentParser.parse_args has, so callers keep their types.
    @overload
    def parse_args(
        self, args: Iterable[str] | None = None, namespace: None = None
    ) -> argparse.Namespace: ...
    @overload
    def parse_args(self, args: Iterable[str] | None, namespace: _N) -> _N: ...
    @overload
    def parse_args(self, *, namespace: _N) -> _N: ...
    def parse_args(
        self, args: Iterable[str] | None = None, namespace: _N | None = None
    ) -> argparse.Namespace | _N:
        """Parse, naming the command (not just `kit`) when words are left over."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            raise _usage(prog, "unrecognized arguments: " + " ".join(extras))
        return parsed

    def error(self, message: str) -> NoReturn:
        """Raise UsageError instead of printing the usage and exiting with status 2."""
        raise _usage(self.prog, message)


def _usage(prog: str, message: str) -> UsageError:
    """The UsageError for `message`, values taken out, pointing at the command's help."""
    return UsageError(f"{prog}: {without_values(message)}. `{prog} --help` lists what it takes.")


def without_values(message: str) -> str:
    """An argparse message with every argument value taken out (option names stay)."""
    head, found, rest = message.partition("unrecognized arguments: ")
    if found:
        options = [word.split("=")[0] for word in rest.split() if word.startswith("-")]
        known = [word for word in options if _OPTION.fullmatch(word)]
        extra = len(rest.split()) - len(known)
        parts = [f"unknown option {', '.join(known)}"] if known else []
        if extra:
            values = "a value" if extra == 1 else f"{extra} values"
            parts.append(f"{values} it does not take (not shown: it may be a password)")
        return head + " and ".join(parts)
    for pattern, replacement in _REWRITES:
        message = pattern.sub(replacement, message)
    return message


def port(text: str) -> int:
    """A TCP port, 1 to 65535, in ASCII digits."""
    found = read_port(text)
    if found is None:
        raise argparse.ArgumentTypeError("give a port number from 1 to 65535, such as 8883")
    return found


def port_or_any(text: str) -> int:
    """A TCP port, or 0 for any free port."""
    found = read_port(text, lowest=0)
    if found is None:
        raise argparse.ArgumentTypeError("give a port number from 0 (any free port) to 65535")
    return found


def whole_number(lowest: int, highest: int) -> Callable[[str], int]:
    """An argument type: a whole number from `lowest` to `highest`, in ASCII digits."""

    def parse(text: str) -> int:
        digits = text[1:] if text.startswith("-") else text
        if digits.isascii() and digits.isdigit() and len(digits) < 10:
            number = int(text)
            if lowest <= number <= highest:
                return number
        raise argparse.ArgumentTypeError(f"give a whole number from {lowest} to {highest}")

    parse.__name__ = "whole number"
    return parse


def positive_number(what: str, example: str, highest: float) -> Callable[[str], float]:
    """An argument type: a number above zero and below `highest`, such as 30 or 0.5."""

    def parse(text: str) -> float:
        try:
            number = float(text) if text.isascii() else 0.0
        except ValueError:
            number = 0.0
        if not 0 < number < highest:  # also false for nan
            raise argparse.ArgumentTypeError(f"give a number of {what} above 0, such as {example}")
        return number

    parse.__name__ = what
    return parse


_HOST = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def host_name(text: str) -> str:
    """A DNS host name (letters, digits, '-' and '.'), as boards use to reach the broker."""
    if not text.isascii() or not _HOST.fullmatch(text.rstrip(".")):
        raise argparse.ArgumentTypeError(
            "give a host name such as mylaptop.local (letters, digits, '-' and '.')"
        )
    return text.rstrip(".").lower()
