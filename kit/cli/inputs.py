"""What the `kit` commands read and write on a person's behalf: files they name, stdin, --out
places and the WiFi password, each with a message that says what to do when it cannot be used."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from kit import arguments, environment
from kit.errors import FileError, UsageError
from kit.pem import PemBlock, der_kind

PASSWORD_VARIABLE = environment.PASSWORD_VARIABLE
# Far above any CSR, certificate or CA file: a bigger input is the wrong file (or /dev/zero).
READ_LIMIT = 1024 * 1024
SLOT = arguments.whole_number(0, 4)


def read_text(name: str) -> str:
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
    kind = der_kind(data) if data[:1] == b"\x30" else None
    if kind is not None:
        return PemBlock(kind, data).pem  # binary DER, as some tools save it
    # Stray bytes around a PEM block (an e-mail's encoding) do not matter to the paste cleaner.
    return data.decode("utf-8", errors="replace")


def is_stdin(name: str | None) -> bool:
    """Whether a file argument reads stdin ('-', or a name for it such as /dev/stdin)."""
    return name is not None and (name == "-" or os.path.normpath(name) in _STDIN_NAMES)


# Names, not resolved paths: /dev/stdin resolves to whatever stdin is (/dev/null, a pipe).


# Names, not resolved paths: /dev/stdin resolves to whatever stdin is (/dev/null, a pipe).
_STDIN_NAMES = {"/dev/stdin", "/proc/self/fd/0", "/dev/fd/0"}


def output_file(path: Path | None, example: str) -> Path | None:
    """An --out file path, checked before any work: not a folder, in a folder that exists."""
    if path is None:
        return None
    check_name(path)
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


def check_name(path: Path) -> None:
    """A path the operating system can look up (not too long, no NUL)."""
    try:
        path.exists()
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or "not a usable file name"
        raise FileError(f"--out: {reason}. Give a shorter path to a file.") from None


def output_folder(path: Path | None) -> Path | None:
    """An --out folder path: an existing folder, or a new one in a folder that exists."""
    if path is None:
        return None
    check_name(path)
    if path.exists() and not path.is_dir():
        raise FileError(f"--out {path} is a file; give a folder (it is made if it is missing).")
    if not path.parent.is_dir():
        raise FileError(
            f"--out {path}: the folder {path.parent} does not exist. Create it first, or give "
            "a folder inside one that exists."
        )
    return path


def wifi_password(from_stdin: bool) -> str:
    """The WiFi password from stdin, the environment, or a hidden prompt; never from argv."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:  # end of input, not an empty line: nothing was sent
            raise UsageError(
                "--password-stdin: stdin ended before the password line. Send the password "
                "followed by Enter (an empty line for an open network)."
            )
        return line.rstrip("\r\n")
    from_environment = environment.wifi_password()
    if from_environment is not None:
        return from_environment
    if not sys.stdin.isatty():
        raise UsageError(
            f"No WiFi password given. Use --password-stdin, set {PASSWORD_VARIABLE}, or run "
            "the command in a terminal to be asked for it."
        )
    return getpass.getpass("WiFi password (empty for an open network, not shown): ")
