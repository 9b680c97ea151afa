"""The class site in a real browser (Debian's Chromium, Playwright): the instructor creates the
class and opens the handout; a student logs in, pastes a CSR captured from a virtual board,
registers and downloads config.h; the board, flashed with it, connects, and both My devices and
the instructor's page say so. A second student sees nothing of it. Run alone: pytest -m browser.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from class_server import new_class, serving

from kit import settings, steps
from kit.places import using_home

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_a_student_registers_through_the_class_site_and_the_board_connects(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import sync_playwright

    instructor_home, student_home = tmp_path / "instructor", tmp_path / "student"
    shots = tmp_path_factory.getbasetemp() / "class-screenshots"  # outside the checkout
    shots.mkdir(exist_ok=True)
    names = ["Ada Lovelace", "Bob <b>Builder</b>", "Cy Young"]
    running = new_class(instructor_home, names, tmp_path / "roster.csv")
    site, port = running.site, running.port
    try:
        with (
            serving(running, "--broker-host", "localhost"),
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            # The instructor opens the handout: three cards, names inert.
            teacher = browser.new_page(ignore_https_errors=True)
            teacher.goto(running.handout.as_uri())
            assert teacher.locator("section.card").count() == 3
            assert teacher.locator("section.card h2").nth(1).inner_text() == "Bob <b>Builder</b>"
            cards = {
                card.locator("h2").inner_text(): re.findall(
                    r"(?:Username|Password) (\S+)", card.inner_text()
                )
                for card in teacher.locator("section.card").all()
            }

            def log_in(page, username: str, password: str) -> None:
                page.goto(f"{site}/login")
                page.fill("input[name=username]", username)
                page.fill("input[name=password]", password)
                page.click("button:has-text('Log in')")

            log_in(teacher, "instructor", running.instructor_password)
            assert "The class" in teacher.inner_text("h1")

            # The student's own computer: a virtual board's CSR, captured as in notebook 01.
            with using_home(student_home):
                captured = steps.capture(settings.Settings(), name="ada_board")
            ada = browser.new_context(ignore_https_errors=True, accept_downloads=True).new_page()
            username, password = cards["Ada Lovelace"]
            log_in(ada, username, password)
            ada.click("a:has-text('Register Thing')")
            ada.fill("textarea[name=csr]", "10:14:00.000 -> " + captured.csr.pem)
            ada.click("button:has-text('Register')")
            assert "Registered ada_board" in ada.inner_text("p.done")
            ada.screenshot(path=str(shots / "register-thing.png"), full_page=True)
            with ada.expect_download() as download:
                ada.click("a:has-text('config.h')")
            config = Path(download.value.path()).read_text()
            config = config.replace("YOUR-WIFI-NAME", "Classroom").replace(
                "YOUR-WIFI-PASSWORD", "a-real-wifi-pass"
            )
            flashed = tmp_path / "config.h"
            flashed.write_text(config)
            with using_home(student_home):
                steps.flash_virtual(flashed, 1.0)

            deadline = time.monotonic() + 30
            while "connected now" not in ada.inner_text("table"):
                assert time.monotonic() < deadline, ada.inner_text("main")
                time.sleep(1)
                ada.goto(f"{site}/devices")
            teacher.goto(f"{site}/class")
            row = teacher.locator("tr", has_text="ada_board")
            assert "Ada Lovelace" in row.inner_text()
            assert row.locator("td.state").inner_text() == "connected"
            assert f"https://localhost:{port}/" in teacher.inner_text("main")  # as served
            teacher.screenshot(path=str(shots / "the-class.png"), full_page=True)
            ada.screenshot(path=str(shots / "my-devices.png"), full_page=True)

            # Bob sees nothing of it, on any page or URL.
            bob = browser.new_context(ignore_https_errors=True).new_page()
            log_in(bob, *cards["Bob <b>Builder</b>"])
            assert "ada_board" not in bob.content()
            for path in ("/devices/ada_board/config.h", "/devices/ada_board/certificate.pem"):
                assert bob.goto(f"{site}{path}").status == 404
            assert bob.goto(f"{site}/class").status == 403
            browser.close()
    finally:
        with using_home(student_home):
            steps.stop_everything()
