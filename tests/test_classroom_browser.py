"""The class site in a real browser (Debian's Chromium, Playwright): the instructor creates the
class and opens the handout; a student logs in, pastes a CSR captured from a virtual board,
registers and downloads config.h; the board, flashed with it, connects, and both My devices and
the instructor's page say so. A second student sees nothing of it. Run alone: pytest -m browser.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest
from class_server import new_class, serving
from helpers import csr_pem

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
            serving(running, "--broker-host", "localhost") as served,
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

            # Part 2: the live dashboards.
            register_by_paste(ada, site, csr_pem("ada_spare"))
            register_by_paste(bob, site, csr_pem("bob_board"))
            student_dashboard(ada, site, shots)
            others_stay_out(bob, site)
            instructor_live_view(teacher, site, shots)
            catches_up_after_a_restart(ada, site, served)
            browser.close()
    finally:
        with using_home(student_home):
            steps.stop_everything()


def register_by_paste(page, site: str, pem: str) -> None:
    page.goto(f"{site}/register")
    page.fill("textarea[name=csr]", pem)
    page.click("button:has-text('Register')")
    assert "Registered" in page.inner_text("p.done")


def student_dashboard(ada, site: str, shots: Path) -> None:
    """Ada picks her board, sees its history then new points, and dims its LED."""
    ada.goto(f"{site}/dashboard")
    options = ada.locator("#thing option").all_inner_texts()
    assert options == ["ada_board", "ada_spare"]
    ada.select_option("#thing", "ada_spare")
    ada.wait_for_url("**/dashboard?thing=ada_spare")
    ada.select_option("#thing", "ada_board")
    ada.wait_for_url("**/dashboard?thing=ada_board")
    wait_js(ada, "document.getElementById('live').textContent === 'updates live'")
    history = ada.evaluate("window.kitPlot.data[0].length")
    assert history >= 3  # the board published every second since it connected
    wait_js(ada, f"window.kitPlot.data[0].length >= {history + 2}")
    assert ada.inner_text("#presence") == "connected now"
    assert "°F" in ada.inner_text("#console")
    # The slider: the virtual board applies it and reports it back on led/state.
    ada.eval_on_selector(
        "#brightness",
        "(slider) => { slider.value = 37; slider.dispatchEvent(new Event('input')); }",
    )
    wait_js(ada, "document.getElementById('reported').textContent === '37 %'")
    ada.check("input[name=switch][value='0']")
    wait_js(ada, "document.getElementById('reported').textContent === '0 %'")
    ada.screenshot(path=str(shots / "dashboard.png"), full_page=True)


def others_stay_out(bob, site: str) -> None:
    """Bob's drop-down lists his device only; Ada's stream and LED refuse his session."""
    bob.goto(f"{site}/dashboard")
    assert bob.locator("#thing option").all_inner_texts() == ["bob_board"]
    assert bob.goto(f"{site}/dashboard?thing=ada_board").ok  # shows his own device instead
    assert bob.locator("#dashboard").get_attribute("data-thing") == "bob_board"
    for path in ("/live/ada_board/events?after=0", "/live/ada_board/story", "/live/*/events"):
        assert bob.goto(f"{site}{path}").status == 404


def instructor_live_view(teacher, site: str, shots: Path) -> None:
    """Every board of the class on one screen, the silent ones first."""
    teacher.goto(f"{site}/class/live")
    wait_js(teacher, "document.querySelectorAll('#class-live .card').length === 3")
    order = teacher.locator("#class-live .card h3").all_inner_texts()
    assert set(order) == {"ada_board", "ada_spare", "bob_board"}
    assert order[-1] == "ada_board"  # the only one talking comes last
    talking = teacher.locator(".card", has_text="ada_board")
    wait_js(
        teacher, "document.querySelector('.card[data-thing=ada_board] .reading').textContent !== ''"
    )
    assert "°F" in talking.inner_text() and "Ada Lovelace" in talking.inner_text()
    assert "silent" in teacher.locator(".card", has_text="bob_board").get_attribute("class")
    teacher.screenshot(path=str(shots / "live-view.png"), full_page=True)


def catches_up_after_a_restart(ada, site: str, served) -> None:
    """The class server restarts mid-class; the board goes on publishing meanwhile. Ada's page
    reconnects by itself, loads its story again and misses nothing: one point a second."""
    ada.goto(f"{site}/dashboard?thing=ada_board")
    wait_js(ada, "document.getElementById('live').textContent === 'updates live'")
    before = ada.evaluate("window.kitPlot.data[0].length")
    served.restart(pause=4)
    wait_js(ada, f"window.kitPlot.data[0].length >= {before + 6}", timeout=30)
    times = ada.evaluate("Array.from(window.kitPlot.data[0])")
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # The board publishes every second: nothing is missing, and nothing came twice.
    assert min(gaps) > 0.5 and max(gaps) < 1.6, gaps


def wait_js(page, expression: str, timeout: float = 15.0) -> None:
    """Wait until `expression` is true in the page (Playwright's wait_for_function compiles
    its text with eval, which the site's Content-Security-Policy rightly refuses)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        time.sleep(0.2)
