"""Where things live: the kit's data directory (KIT_HOME) and the checkout's folders.

All state lives in one data directory, `$KIT_HOME` or the platform's user data directory. It
carries a format version from the first release, so a later kit can migrate an old one or refuse
it with a clear message instead of misreading it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import platformdirs

from kit import __version__
from kit.errors import DataDirError, KitError

FORMAT = 1
MARKER = "kit-home.json"


def kit_home(create: bool = True) -> Path:
    """The data directory, created and stamped with the format version on first use."""
    configured = os.environ.get("KIT_HOME")
    home = Path(configured).expanduser() if configured else Path(platformdirs.user_data_dir("kit"))
    if create:
        _open(home)
    return home


def _open(home: Path) -> None:
    """Create `home` or check that it is a data directory this kit can read."""
    marker = home / MARKER
    if marker.exists():
        try:
            found = json.loads(marker.read_text(encoding="utf-8"))["format"]
        except (ValueError, KeyError, TypeError):
            raise DataDirError(
                f"{marker} is damaged. Delete the folder {home} to start over (your devices "
                "will have to be registered again)."
            ) from None
        if found > FORMAT:
            raise DataDirError(
                f"The data in {home} was written by a newer kit (format {found}; this kit reads "
                f"format {FORMAT}). Update the kit with `git pull` and `make lab`, or set "
                "KIT_HOME to another folder."
            )
        return
    if home.exists() and any(home.iterdir()):
        raise DataDirError(
            f"KIT_HOME points at {home}, a folder that has files but is not a kit data folder. "
            "Set KIT_HOME to an empty or new folder."
        )
    home.mkdir(parents=True, exist_ok=True)
    write_private(marker, json.dumps({"format": FORMAT, "created_by": __version__}) + "\n")


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
    """Write `text` to `path` atomically (temp file + rename), readable by the owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path
