"""A cell run before the cells it needs (a restarted kernel, the next day) says to run the
notebook from the top, in a real kernel of this environment; a typo keeps Python's answer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from kit import kernel_hints
from kit.places import checkout


def test_a_name_is_found_in_the_cell_that_defines_it(tmp_path: Path) -> None:
    shutil.copy(checkout() / "notebooks" / "04_run_prototype.ipynb", tmp_path)
    (tmp_path / "broken.ipynb").write_text("{ not json")
    assert kernel_hints.defined_by(tmp_path, "course") == "from kit import course"
    assert kernel_hints.defined_by(tmp_path, "view") == "view = course.dashboard()"
    assert kernel_hints.defined_by(tmp_path, "vew") is None


def test_install_keeps_what_the_file_held(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("sys.prefix", str(tmp_path))
    path = kernel_hints.config_file()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"IPKernelApp": {"extensions": ["other"]}, "X": {"y": 1}}))
    kernel_hints.install()
    kernel_hints.install()  # twice: listed once
    written = json.loads(path.read_text())
    assert written == {
        "IPKernelApp": {"extensions": ["other", kernel_hints.EXTENSION]},
        "X": {"y": 1},
    }
    path.write_text("[1, 2]")  # not a configuration the kit can add to: left alone
    kernel_hints.install()
    assert path.read_text() == "[1, 2]"


@pytest.mark.timeout(120)
def test_a_restarted_kernel_says_to_run_from_the_top(tmp_path: Path) -> None:
    shutil.copy(checkout() / "notebooks" / "04_run_prototype.ipynb", tmp_path)
    kernel_hints.install()  # what `kit lab` does
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        course = run(client, "course.serial_log()")
        assert course["ename"] == "NameError"
        shown = "\n".join(course["traceback"])
        assert "Run the notebook from the top" in shown and "Run ▸ Run All Cells" in shown
        assert "(from kit import course)" in shown and "Traceback" not in shown
        typo = run(client, "vew = 1\nprint(veww)")
        assert typo["ename"] == "NameError" and "Run the notebook" not in "".join(typo["traceback"])
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run(client, code: str) -> dict:
    """Execute `code` until the kernel is idle again; the error it raised (ename, evalue and
    the traceback lines shown)."""
    msg_id = client.execute(code)
    error = None
    while True:
        message = client.get_iopub_msg(timeout=30)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "error":
            error = message["content"]
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            assert error is not None, f"{code!r} raised nothing"
            return error
