"""The student's own copies of the course notebooks, where the course is run.

Running a cell writes its outputs into the notebook. If the course ran on notebooks/ (tracked by
git), `git status` would show every notebook modified and the next `git pull` would conflict. So
`kit lab` serves copies in my-notebooks/ (ignored by git) and refreshes them from notebooks/
each time it starts, without ever overwriting a student's edits:

- a notebook the student does not have yet is copied;
- a copy whose cells are as the kit copied them (outputs aside) follows the course's newer
  version (its outputs are cleared: running it again brings them back);
- a copy the student edited is kept as it is, and the newer version is put beside it as
  "<name> (new version).ipynb".

What the kit copied is remembered by fingerprint in my-notebooks/.kit-copies.json.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.places import read_json, write_private

MANIFEST = ".kit-copies.json"
LIMIT = 16 * 1024 * 1024  # a course notebook is tens of KB; a copy with plots a few MB


@dataclass(frozen=True)
class Copied:
    """What happened to one notebook: "new", "updated", "kept" or "current"."""

    name: str
    action: str
    note: str


def fingerprint(notebook: dict[str, Any]) -> str:
    """The notebook's cells as a student sees them to edit: type, source and pictures."""
    cells = [
        [cell.get("cell_type"), _text(cell.get("source", "")), cell.get("attachments", {})]
        for cell in notebook.get("cells", [])
    ]
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode()).hexdigest()


def _text(source: str | list[str]) -> str:
    """A cell's source as one string (nbformat allows a list of lines on disk)."""
    return source if isinstance(source, str) else "".join(source)


def _read(path: Path) -> dict[str, Any] | None:
    """A notebook file as JSON, or None when it is not one (the student may have broken it)."""
    try:
        if path.stat().st_size > LIMIT:
            return None
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _beside(copy: Path, course: str) -> Path:
    """Where the new version goes next to an edited copy: a free name, or the file that
    already holds this version (a student may edit an earlier "new version" too)."""
    number = 1
    while True:
        suffix = " (new version)" if number == 1 else f" (new version {number})"
        beside = copy.with_name(f"{copy.stem}{suffix}.ipynb")
        found = _read(beside) if beside.exists() else None
        if not beside.exists() or (found is not None and fingerprint(found) == course):
            return beside
        number += 1


def prepare(source: Path, target: Path) -> list[Copied]:
    """Bring the copies in `target` up to date with the course in `source`; say what changed."""
    manifest_path = target / MANIFEST
    copied = read_json(manifest_path, "Delete it: the kit then keeps every copy as it is") or {}
    done = []
    for original in sorted(source.glob("*.ipynb")):
        name = original.name
        text = original.read_text(encoding="utf-8")
        course = fingerprint(json.loads(text))
        copy = target / name
        current = _read(copy) if copy.exists() else None
        if not copy.exists():
            write_private(copy, text)
            done.append(Copied(name, "new", f"{name}: copied from the course."))
        elif copied.get(name) == course:
            done.append(Copied(name, "current", f"{name}: up to date."))
        elif current is not None and fingerprint(current) == copied.get(name):
            write_private(copy, text)
            done.append(
                Copied(
                    name, "updated", f"{name}: updated to the course's new version (run it again)."
                )
            )
        else:
            beside = _beside(copy, course)
            if not beside.exists():
                write_private(beside, text)
            done.append(
                Copied(
                    name,
                    "kept",
                    f"{name}: kept as you edited it; the course's new version is beside it as "
                    f"'{beside.name}'.",
                )
            )
            continue  # the manifest keeps the version the student's copy came from
        copied[name] = course
    write_private(manifest_path, json.dumps(copied, indent=2, sort_keys=True) + "\n")
    return done
