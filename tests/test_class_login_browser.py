"""A student switches their notebooks to the class in JupyterLab (Debian's Chromium): the
cell shows the class server's fingerprint to compare with the card, the password goes into a
password field, and the button logs in. Run alone with `pytest -m browser`."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from class_server import new_class, serving
from test_browser import ARGS, CHROMIUM, VIEWPORT, Lab, Student, lab

from kit.cloud.class_cloud import ClassLink
from kit.places import using_home

__all__ = ["lab"]  # the fixture
pytestmark = pytest.mark.browser


@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_a_student_logs_in_to_the_class_from_a_notebook(lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    running = new_class(tmp_path / "instructor", ["Ada Lovelace"], tmp_path / "roster.csv")
    username, password = running.cards["Ada Lovelace"]
    use = f'course.use(cloud="class", url="{running.site}/", user="{username}")'
    cell = f"from kit import course\n{use}"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nbformat.write(notebook, tmp_path / "my-notebooks" / "class_login.ipynb")
    token = re.search(r"token=([0-9a-f]+)", lab.log_text()).group(1)
    with serving(running, "--broker-host", "localhost"), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        student = Student(page, lab, token)
        shown = student.run_notebook("class_login")
        assert running.fingerprint in shown and "Compare it with the one on your card" in shown
        page.fill("input[type=password]", password)
        page.click("button:has-text('It matches my card: log in')")
        page.wait_for_selector("text=Logged in as", timeout=30_000)
        student.screenshot("logged-in")
        assert page.input_value("input[type=password]") == ""
        browser.close()
    with using_home(lab.home):
        assert ClassLink.load().username == username
    saved = (tmp_path / "my-notebooks" / "class_login.ipynb").read_text()
    assert password not in saved
