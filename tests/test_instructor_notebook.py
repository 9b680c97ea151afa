"""The instructor's notebook runs with nbclient: it starts the class (the site in the
background), adds the example roster, shows the class table and where the live view is, and
stops the site; no password reaches the notebook."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from class_server import free_port

from kit import demo, steps
from kit.places import checkout, using_home


@pytest.mark.timeout(300)
def test_the_instructor_notebook_runs_the_class(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = checkout() / "notebooks" / "instructor_class.ipynb"
    notebook = nbformat.read(source, as_version=4)
    env = {
        **os.environ,
        "KIT_HOME": str(home),
        "KIT_HEADLESS": "1",
        "KIT_CLASS_PORT": free_port(),
        "KIT_BROKER_PORT": free_port(),
        "KIT_BROKER_WS_PORT": free_port(),
    }
    try:
        demo.notebook_client(notebook, source.parent).execute(env=env)
    finally:
        from kit.classroom import teach

        with using_home(home):
            teach.stop()  # the site, if the notebook did not get to its last cell
            steps.stop_everything()
    shown = "\n".join(
        str(output.get("data", {}).get("text/html", "")) + str(output.get("text", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "The class site runs at https://" in shown
    assert "Added 3 student(s)" in shown
    for name in ("Ada Lovelace", "Grace Hopper", "Alan Turing"):
        assert name in shown
    assert "not registered" in shown and "/class/live" in shown
    assert "The class site is stopped" in shown
    # Every password is on a card, and none in the notebook.
    folder = home / "class"
    cards = "".join(p.read_text() for p in folder.glob("*.html"))
    passwords = re.findall(r"Password <code>([^<]+)</code>", cards)
    assert len(passwords) == 4  # the instructor and three students
    saved = nbformat.writes(notebook)
    assert not any(password in saved for password in passwords)
    # The roster cell run again adds nobody twice.
    from kit.classroom import teach

    with using_home(home):
        again = teach.add_roster(source.parent / "examples" / "roster.csv")
    assert "Every student of the roster has an account already." in again
