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
from typing import Literal

from kit.errors import FileError
from kit.places import read_json, write_private

MANIFEST = ".kit-copies.json"
LIMIT = 16 * 1024 * 1024  # a course notebook is tens of KB; a copy with plots a few MB


Action = Literal["new", "updated", "kept", "current"]


@dataclass(frozen=True)
class Copied:
    """What happened to one notebook, and the sentence that says so."""

    name: str
    action: Action
    note: str


def fingerprint(notebook: object) -> str | None:
    """The notebook's cells as a student edits them (type, source, pictures), or None when it
    is not a notebook's shape."""
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list) or not all(isinstance(cell, dict) for cell in cells):
        return None
    shown = []
    for cell in cells:
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)  # nbformat allows a list of lines on disk
        if not isinstance(source, str):
            return None
        shown.append([cell.get("cell_type"), source, cell.get("attachments", {})])
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()


def _fingerprint_of(path: Path) -> str | None:
    """The fingerprint of a notebook file, or None when it is missing or not a notebook (the
    student may have broken it: it is then kept as it is)."""
    try:
        if path.stat().st_size > LIMIT:
            return None
        return fingerprint(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def _beside(copy: Path, course: str) -> Path:
    """Where the new version goes next to an edited copy: a free name, or the file that
    already holds this version (a student may edit an earlier "new version" too)."""
    number = 1
    while True:
        suffix = " (new version)" if number == 1 else f" (new version {number})"
        beside = copy.with_name(f"{copy.stem}{suffix}.ipynb")
        if not beside.exists() or _fingerprint_of(beside) == course:
            return beside
        number += 1


def prepare(source: Path, target: Path) -> list[Copied]:
    """Bring the copies in `target` up to date with the course in `source`; say what changed."""
    if target.resolve() == source.resolve():
        raise FileError(
            f"{target} is the course's own folder, which must stay without outputs: choose "
            "another folder for your copies (or leave out --folder: my-notebooks/)."
        )
    if target.exists() and not target.is_dir():
        raise FileError(f"{target} is a file, not a folder: choose a folder for your notebooks.")
    manifest_path = target / MANIFEST
    copied = read_json(manifest_path, "Delete it: the kit then compares each copy afresh") or {}
    done = []
    for original in sorted(source.glob("*.ipynb")):
        name, text = original.name, original.read_text(encoding="utf-8")
        course = fingerprint(json.loads(text))
        assert course is not None, f"{original} is not a notebook"
        done.append(_refresh(target / name, text, course, copied.get(name)))
        if done[-1].action != "kept":
            copied[name] = course  # what the copy now comes from
    write_private(manifest_path, json.dumps(copied, indent=2, sort_keys=True) + "\n")
    return done


def _refresh(copy: Path, text: str, course: str, last: str | None) -> Copied:
    """Bring one copy up to date: `last` is the version the kit copied there before."""
    name = copy.name
    if not copy.exists():
        write_private(copy, text)
        return Copied(name, "new", f"{name}: copied from the course.")
    mine = _fingerprint_of(copy)
    if mine == course or last == course:  # as the course is, or the student edited it since
        return Copied(name, "current", f"{name}: up to date.")
    if mine is not None and mine == last:  # only run since the kit copied it
        write_private(copy, text)
        return Copied(
            name, "updated", f"{name}: updated to the course's new version (run it again)."
        )
    beside = _beside(copy, course)
    if beside.exists():
        return Copied(
            name, "current", f"{name}: kept as you edited it; {beside.name} is beside it."
        )
    write_private(beside, text)
    return Copied(
        name,
        "kept",
        f"{name}: kept as you edited it; the course's new version is beside it as '{beside.name}'.",
    )
