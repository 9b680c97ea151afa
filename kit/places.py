"""Where things live: the kit's data directory (KIT_HOME) and the checkout's folders.

All state lives in one data directory, `$KIT_HOME` or the platform's user data directory. It
carries a format version from the first release, so a later kit can migrate an old one or refuse
it with a clear message instead of misreading it. The folder and everything in it is private to
its owner (0700 folders, 0600 files): it holds keys, a password in config.h and the cloud's data.

A file the kit cannot read is never overwritten or deleted: the error names it, says what is
wrong, and `kit doctor --repair` moves it aside (name.damaged-<time>) before starting afresh.

Files are written as bytes, so Windows does not end each line with CR LF: config.h, PEM and
JSON files are the same bytes on every system. They are read back with CR LF taken as LF (a file
edited in Notepad or copied from a Windows laptop). On Windows chmod only sets the read-only
flag: there the data folder is private through the user's own folder (%LOCALAPPDATA%).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import platformdirs

from kit import __version__, environment
from kit.errors import DamagedFileError, DataDirError, KitError

FORMAT = 1
MARKER = "kit-home.json"
STATE_LIMIT = 1024 * 1024  # far above any state file the kit writes (they are a few KB)
REPAIR = (
    "Run course.repair() in a notebook (or `kit doctor --repair`) to set it aside (it is kept, "
    "renamed *.damaged-<time>)"
)


# A data folder chosen in code (kit demo's own), taking precedence over KIT_HOME for this
# thread of work only: the process's environment is never edited.
_chosen_home: contextvars.ContextVar[Path | None] = contextvars.ContextVar("kit_home", default=None)


@contextlib.contextmanager
def using_home(home: Path) -> Iterator[Path]:
    """Use `home` as the data folder inside the `with` block (background processes too)."""
    token = _chosen_home.set(Path(home))
    try:
        yield Path(home)
    finally:
        _chosen_home.reset(token)


def kit_home(create: bool = True) -> Path:
    """The data directory, created and stamped with the format version on first use."""
    chosen = _chosen_home.get()
    if chosen is not None:
        if create:
            _open(chosen)
        return chosen
    configured = environment.home()
    try:
        home = (
            Path(configured).expanduser() if configured else Path(platformdirs.user_data_dir("kit"))
        )
    except RuntimeError:  # ~someone who does not exist
        raise DataDirError(
            f"KIT_HOME is {configured!r}, a home folder that does not exist. Set KIT_HOME to a "
            "folder (or unset it)."
        ) from None
    if create:
        _open(home)
    return home


def _open(home: Path) -> None:
    """Create `home` or check that it is a data directory this kit can read."""
    marker = home / MARKER
    if marker.exists():
        private_dir(home, tighten=True)
        found = data_format(home)
        if found > FORMAT:
            raise DataDirError(
                f"The data in {home} was written by a newer kit (format {found}; this kit reads "
                f"format {FORMAT}). Update the kit with `git pull` and `make lab`, or set "
                "KIT_HOME to another folder."
            )
        return
    if _foreign_files(home) and not marker.exists():  # (another process may just have made it)
        raise DataDirError(
            f"KIT_HOME points at {home}, a folder that has files but is not a kit data folder. "
            "Set KIT_HOME to an empty or new folder."
        )
    private_dir(home, tighten=True)
    write_marker(home)  # two first starts at once both write the same marker: no harm


def _foreign_files(home: Path) -> bool:
    """Whether `home` holds anything but the marker (or the marker being written)."""
    if not home.is_dir():
        return False
    return any(p.name != MARKER and not p.name.startswith(f".{MARKER}.") for p in home.iterdir())


def data_format(home: Path) -> int:
    """The format number in the data folder's marker file, or DamagedFileError."""
    marker = home / MARKER
    found = (read_json(marker, "and write a new one") or {}).get("format")
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise damaged(
            marker,
            f"its format is {found!r}, not a whole number such as {FORMAT}",
            "and write a new one",
        )
    return found


def write_marker(home: Path) -> None:
    """Stamp `home` as a data folder of this kit's format."""
    write_private(home / MARKER, json.dumps({"format": FORMAT, "created_by": __version__}) + "\n")


def damaged(path: Path, problem: str, after: str, target: Path | None = None) -> DamagedFileError:
    """The error for a file the kit cannot read: which, what is wrong, and the way out.

    `after` finishes the sentence "Run `kit doctor --repair` to set it aside ..." (what to do
    then); when it is a sentence of its own (capitalised), it replaces that advice.
    """
    fix = after if after[:1].isupper() else f"{REPAIR} {after}"
    return DamagedFileError(f"{path} is damaged: {problem}. {fix}.", target or path)


def read_state(path: Path, after: str, target: Path | None = None) -> str | None:
    """The text of a state file in the data folder (CR LF read as LF), None if there is none,
    or DamagedFileError.

    Only a regular file of a sane size is read: a FIFO, a device or a link to /dev/zero where a
    state file belongs would otherwise hang the kit or fill its memory.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise damaged(path, "it is a link to nothing", after, target) from None
        return None
    except OSError as error:  # a link loop, a name too long
        raise damaged(path, f"it cannot be read ({error.strerror})", after, target) from None
    if not stat.S_ISREG(info.st_mode):
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
        raise damaged(path, f"it is {what}, not a file", after, target)
    if info.st_size > STATE_LIMIT:
        raise damaged(
            path, f"it is {info.st_size:,} bytes, far more than the kit writes", after, target
        )
    try:
        text = path.read_bytes()[:STATE_LIMIT].decode("utf-8")
    except UnicodeDecodeError:
        raise damaged(path, "it is not text", after, target) from None
    except OSError as error:
        raise damaged(path, f"it cannot be read ({error.strerror})", after, target) from None
    return text.replace("\r\n", "\n")


def read_json(path: Path, after: str, target: Path | None = None) -> dict[str, Any] | None:
    """The JSON object stored in `path`, None if there is no file, or DamagedFileError."""
    text = read_state(path, after, target)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: brackets nested thousands deep
        problem = "it is empty" if not text.strip() else "it is not valid JSON (cut short?)"
        raise damaged(path, problem, after, target) from None
    if not isinstance(value, dict):
        kind = "a list" if isinstance(value, list) else "a single value"
        kind = "a string" if isinstance(value, str) else kind
        raise damaged(path, f"it holds {kind} where the kit keeps named fields", after, target)
    return value


def set_aside(path: Path) -> Path:
    """Rename a damaged file or folder to <name>.damaged-<time> beside it; return the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    number = 1
    while kept.exists():
        number += 1
        kept = path.with_name(f"{path.name}.damaged-{stamp}-{number}")
    os.replace(path, kept)
    if not kept.is_symlink():  # the copy is as private as the folder it is in
        with contextlib.suppress(OSError):
            os.chmod(kept, 0o700 if kept.is_dir() else 0o600)
    return kept


def private_dir(path: Path, tighten: bool = False) -> Path:
    """Create `path` and any missing parents readable by the owner only (0700); with `tighten`,
    also make an existing `path` private (the data folder from an older kit was 0755)."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=0o700)
    if not path.is_dir():
        raise DataDirError(f"{path} is not a folder. Set KIT_HOME to a folder (or unset it).")
    tighten = tighten and sys.platform != "win32"  # Windows has no such mode bits to tighten
    if tighten and not path.is_symlink() and path.stat().st_mode & 0o077:
        with contextlib.suppress(PermissionError):
            os.chmod(path, 0o700)
    return path


def open_private(path: Path) -> BinaryIO:
    """Open a log for appending, created 0600 (logs hold device names and addresses)."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    if sys.platform == "win32":
        flags |= os.O_BINARY  # without it Windows writes '\r\n' for every '\n' in the log
    handle = os.open(path, flags, 0o600)
    if sys.platform != "win32":
        os.fchmod(handle, 0o600)  # also a log an older kit made 0644
    return os.fdopen(handle, "ab", buffering=0)


def checkout() -> Path:
    """The repository checkout the kit runs from (it holds notebooks/ and sketches/)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "sketches").is_dir() or not (root / "notebooks").is_dir():
        raise KitError(
            "The kit is installed without its course files (notebooks/ and sketches/). Install "
            "it from a clone of the repository with `pip install -e .` (or `make lab`)."
        )
    return root


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (temp file + rename), readable by the owner only.

    The bytes are exactly `text` in UTF-8: Windows adds no CR before each LF."""
    path = Path(path)
    private_dir(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:  # mkstemp opens it binary on Windows as well
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path
