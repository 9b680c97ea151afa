"""The course runs on the student's copies (my-notebooks/, ignored by git): running it leaves the
checkout clean, and a newer course never overwrites a student's edits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from kit import notebook_copies
from kit.errors import FileError
from kit.places import checkout


def course_copy(tmp_path: Path) -> Path:
    """A course folder to change, as a `git pull` would."""
    source = tmp_path / "course"
    shutil.copytree(checkout() / "notebooks", source, ignore=shutil.ignore_patterns("examples"))
    return source


def actions(done: list[notebook_copies.Copied]) -> dict[str, str]:
    return {copied.name: copied.action for copied in done}


def edit(path: Path, change) -> None:
    notebook = nbformat.read(path, as_version=4)
    change(notebook)
    nbformat.write(notebook, path)


def add_output(notebook) -> None:
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("stream", text="ran\n")]
    cell.execution_count = 1


def test_the_copies_are_made_once_and_running_them_changes_nothing(tmp_path: Path) -> None:
    source, mine = course_copy(tmp_path), tmp_path / "mine"
    first = actions(notebook_copies.prepare(source, mine))
    assert first and set(first.values()) == {"new"} and "00_setup.ipynb" in first
    assert (mine / "00_setup.ipynb").read_bytes() == (source / "00_setup.ipynb").read_bytes()

    edit(mine / "01_generate_csr.ipynb", add_output)  # the student runs a notebook
    again = actions(notebook_copies.prepare(source, mine))
    assert set(again.values()) == {"current"}
    assert "ran" in (mine / "01_generate_csr.ipynb").read_text()  # outputs are kept


def test_a_newer_course_updates_untouched_copies_and_keeps_edited_ones(tmp_path: Path) -> None:
    source, mine = course_copy(tmp_path), tmp_path / "mine"
    notebook_copies.prepare(source, mine)
    edit(mine / "01_generate_csr.ipynb", add_output)  # run, not edited

    def my_note(notebook) -> None:
        notebook.cells.append(nbformat.v4.new_markdown_cell("My own notes"))

    edit(mine / "02_register_thing.ipynb", my_note)  # edited

    def newer(notebook) -> None:
        notebook.cells[0].source += "\n\nA clearer sentence."

    for name in ("01_generate_csr.ipynb", "02_register_thing.ipynb"):
        edit(source / name, newer)  # the course improves (a git pull)

    done = actions(notebook_copies.prepare(source, mine))
    assert done["01_generate_csr.ipynb"] == "updated" and done["02_register_thing.ipynb"] == "kept"
    assert "A clearer sentence." in (mine / "01_generate_csr.ipynb").read_text()
    mine_02 = (mine / "02_register_thing.ipynb").read_text()
    assert "My own notes" in mine_02 and "A clearer sentence." not in mine_02
    beside = mine / "02_register_thing (new version).ipynb"
    assert "A clearer sentence." in beside.read_text()

    # The student edits the new version too; the next run writes nothing over it.
    edit(beside, my_note)
    again = actions(notebook_copies.prepare(source, mine))
    assert again["02_register_thing.ipynb"] == "kept" and "My own notes" in beside.read_text()
    assert (mine / "02_register_thing (new version 2).ipynb").exists()


def test_a_broken_copy_is_kept_not_overwritten(tmp_path: Path) -> None:
    source, mine = course_copy(tmp_path), tmp_path / "mine"
    notebook_copies.prepare(source, mine)
    (mine / "00_setup.ipynb").write_text("half a notebook {")
    edit(source / "00_setup.ipynb", lambda nb: nb.cells.append(nbformat.v4.new_code_cell("1")))
    assert actions(notebook_copies.prepare(source, mine))["00_setup.ipynb"] == "kept"
    assert (mine / "00_setup.ipynb").read_text() == "half a notebook {"


def test_git_ignores_the_copies_so_git_status_stays_clean() -> None:
    # kit lab's default folder: whatever the course writes there, git does not see.
    for name in ("my-notebooks/00_setup.ipynb", "my-notebooks/.kit-copies.json"):
        ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=checkout())
        assert ignored.returncode == 0, name


def test_copies_as_the_course_has_them_are_current_whatever_the_manifest_says(
    tmp_path: Path,
) -> None:
    source, mine = course_copy(tmp_path), tmp_path / "mine"
    notebook_copies.prepare(source, mine)
    (mine / notebook_copies.MANIFEST).unlink()  # deleted, as its damaged-file message says
    again = notebook_copies.prepare(source, mine)
    assert {c.action for c in again} == {"current"}
    assert not list(mine.glob("*new version*"))


def test_adopting_the_new_version_ends_the_notes(tmp_path: Path) -> None:
    source, mine = course_copy(tmp_path), tmp_path / "mine"
    notebook_copies.prepare(source, mine)
    edit(mine / "02_register_thing.ipynb", lambda nb: nb.cells.pop())  # edited
    edit(source / "02_register_thing.ipynb", lambda nb: nb.cells.pop(0))  # the course changes
    first = actions(notebook_copies.prepare(source, mine))
    assert first["02_register_thing.ipynb"] == "kept"
    assert actions(notebook_copies.prepare(source, mine))["02_register_thing.ipynb"] == "current"
    # The student takes the new version in place of theirs: from then on it is simply current.
    (mine / "02_register_thing (new version).ipynb").replace(mine / "02_register_thing.ipynb")
    assert actions(notebook_copies.prepare(source, mine))["02_register_thing.ipynb"] == "current"
    assert not (mine / "02_register_thing (new version).ipynb").exists()


@pytest.mark.parametrize(
    "broken",
    ['{"cells": [1]}', '{"cells": [{"source": 5}]}', "[" * 100_000, "[]", "\xff\xfe", ""],
    ids=["cell-not-object", "source-not-text", "deep-nesting", "a-list", "not-utf8", "empty"],
)
def test_a_copy_of_any_shape_is_kept_never_a_crash(tmp_path: Path, broken: str) -> None:
    source, mine = course_copy(tmp_path), tmp_path / "mine"
    notebook_copies.prepare(source, mine)
    (mine / "00_setup.ipynb").write_text(broken, encoding="latin-1")
    edit(source / "00_setup.ipynb", lambda nb: nb.cells.append(nbformat.v4.new_code_cell("1")))
    assert actions(notebook_copies.prepare(source, mine))["00_setup.ipynb"] == "kept"
    assert (mine / "00_setup.ipynb").read_text(encoding="latin-1") == broken


def test_the_copies_never_go_into_the_course_folder_or_a_file(tmp_path: Path) -> None:
    source = course_copy(tmp_path)
    with pytest.raises(FileError, match="course's own folder"):
        notebook_copies.prepare(source, source)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(FileError, match="is a file, not a folder"):
        notebook_copies.prepare(source, tmp_path / "a-file")
    assert not (source / notebook_copies.MANIFEST).exists()
