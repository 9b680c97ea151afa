"""A cell run before the cells it needs (a restarted kernel, the next day) says to run the
notebook from the top, in a real kernel started from the course's kernelspec as `kit lab` starts
it; a typo, a name from another notebook or one missing inside a library keep Python's answer."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from kit import kernel_hints, lab
from kit.places import checkout


def test_a_name_is_found_in_the_cell_that_defines_it(tmp_path: Path) -> None:
    notebook = tmp_path / "04_run_prototype.ipynb"
    shutil.copy(checkout() / "notebooks" / notebook.name, notebook)
    (tmp_path / "broken.ipynb").write_text("{ not json")
    notebooks = kernel_hints.notebooks_to_search(tmp_path)
    assert kernel_hints.defined_by(notebooks, "course") == "from kit import course"
    assert kernel_hints.defined_by(notebooks, "view") == "view = course.dashboard()"
    assert kernel_hints.defined_by(notebooks, "vew") is None


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A kernel of the course's kernelspec, encrypted as in `kit lab`, running for notebook 04
    in a folder that also holds notebook 03."""
    for name in ("03_configure_sketch", "04_run_prototype"):
        shutil.copy(checkout() / "notebooks" / f"{name}.ipynb", tmp_path)
    (tmp_path / "library.py").write_text("def use():\n    return course\n")
    monkeypatch.setenv("JUPYTER_PATH", str(lab.kernel_spec(tmp_path / "home")))
    manager = KernelManager(kernel_name="python3", **lab.KERNELS)
    session = str(tmp_path / "04_run_prototype.ipynb")
    manager.start_kernel(cwd=str(tmp_path), env={**os.environ, "JPY_SESSION_NAME": session})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.mark.timeout(120)
def test_a_restarted_kernel_says_to_run_from_the_top(kernel) -> None:
    course = run(kernel, "course.serial_log()")
    assert course["ename"] == "NameError"
    shown = "\n".join(course["traceback"])
    assert "Run the notebook from the top" in shown and "Run ▸ Run All Cells" in shown
    assert "(from kit import course)" in shown and "Traceback" not in shown
    for code in (
        "vew = 1\nprint(veww)",  # a typo
        "rendered",  # defined in notebook 03, not in this one
        "import library\nlibrary.use()",  # missing inside a library, not in a cell
    ):
        error = run(kernel, code)
        assert error["ename"] == "NameError", code
        assert "Run the notebook" not in "".join(error["traceback"]), code


def test_the_kernelspec_is_this_environment_with_the_hints(tmp_path: Path) -> None:
    folder = lab.kernel_spec(tmp_path)
    spec = json.loads((folder / "kernels" / "python3" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    assert "--ext=kit.kernel_hints" in spec["argv"]
    assert spec["metadata"]["supported_encryption"] == ["curve"]


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
