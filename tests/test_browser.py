"""A real browser walks the course as a student would, wrong turns included: `kit lab` (as
`make lab` starts it) in headless Chromium (Debian's, driven by Playwright), on a fresh data
folder, the virtual board and the local cloud.

The walk: 04 before anything else; 00; 01 twice, then 02; 03; 00 again after 03, then 04 with a
live plot and the LED; a kernel restart mid-course; a second device, picked in the drop-down; 05.
Every step must end in the right sentence, no cell may show a traceback or "Error displaying
widget", and no request may answer 404 (the test reads JupyterLab's log). A screenshot of each
notebook at 1024x768 is written outside the checkout. Run it alone with `pytest -m browser`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import csr_pem

from kit import demo, steps
from kit import lab as lab_setup
from kit.places import using_home

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1024, "height": 768}  # a classroom projector
VISIBLE = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab in front


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


class Lab:
    """`kit lab` as a student starts it: its address with the login token, and its log. It can
    be stopped and started again on the same folders (the next day: JupyterLab reopens the
    tabs the student left open)."""

    def __init__(self, tmp_path: Path, screenshots: Path) -> None:
        self.home = tmp_path / "kit-home"
        self.port = free_port()
        self.folder = tmp_path / "my-notebooks"
        self.env = {
            **os.environ,
            "KIT_HOME": str(self.home),
            "KIT_PUBLISH_INTERVAL": "1",
            "KIT_CONFIG_H": str(tmp_path / "config.h"),
            "KIT_BROKER_PORT": free_port(),
            "KIT_BROKER_WS_PORT": free_port(),
            "JUPYTER_CONFIG_DIR": str(tmp_path / "jc"),
            "JUPYTER_DATA_DIR": str(tmp_path / "jd"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "jr"),
            # Terminals that keep their text for screen readers, so a test can read them.
            "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        }
        for name in ("KIT_HEADLESS", "KIT_WIFI_PASSWORD"):
            self.env.pop(name, None)
        terminal = tmp_path / "settings" / "@jupyterlab" / "terminal-extension"
        terminal.mkdir(parents=True)
        (terminal / "plugin.jupyterlab-settings").write_text('{"screenReaderMode": true}')
        self.log = tmp_path / "lab.log"
        self.screenshots = screenshots
        self.server: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """`kit lab --no-browser`, until it prints its address with the token."""
        command = [str(Path(sys.executable).parent / "kit"), "lab", "--no-browser"]
        begin = len(self.log_text())
        with self.log.open("a") as out:
            self.server = subprocess.Popen(
                [*command, "--port", self.port, "--folder", str(self.folder)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        deadline = time.monotonic() + 120
        while "token=" not in self.log_text()[begin:]:
            assert self.server.poll() is None and time.monotonic() < deadline, self.log_text()
            time.sleep(0.5)

    def stop(self) -> None:
        """Ctrl+C in kit lab's terminal: JupyterLab and its kernels stop."""
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=30)

    @property
    def token(self) -> str:
        return re.findall(r"token=([0-9a-f]+)", self.log_text())[-1]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def lab(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`kit lab --no-browser` on a fresh data folder and its own copies of the notebooks."""
    # kit lab must write its JupyterLab defaults itself (the no-news-prompt check below).
    lab_setup.overrides_file().unlink(missing_ok=True)
    screenshots = tmp_path_factory.getbasetemp() / "screenshots"
    screenshots.mkdir(exist_ok=True)
    running = Lab(tmp_path, screenshots)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        with using_home(running.home):
            steps.stop_everything()
        print(f"Screenshots: {screenshots}")


class Student:
    """A student's hands on JupyterLab: open a notebook, run it, read what it shows."""

    def __init__(self, page, lab: Lab, token: str) -> None:
        self.page, self.lab, self.token = page, lab, token
        self.name = ""

    def open(self, name: str) -> None:
        """Open a notebook (a fresh page load, as clicking it in the file browser would)."""
        self.name = name
        # A reset workspace: only this notebook open, so Run All runs this one. The kernels of
        # notebooks opened before keep running, as when a student switches tabs.
        self.page.goto(f"{self.lab.url}/lab/tree/{name}.ipynb?reset&token={self.token}")
        self.page.wait_for_url(re.compile(r"^[^?]*$"))  # JupyterLab's own redirects are done
        # Ready when the status bar has shown the kernel idle for a moment: a click before
        # that is lost while JupyterLab connects the kernel.
        deadline, since = time.monotonic() + 90, None
        while since is None or time.monotonic() - since < 1.5:
            assert time.monotonic() < deadline, f"{name}: the kernel never became idle"
            self._choose_kernel_if_asked()
            status = " ".join(self.page.locator(".jp-StatusBar-Widget").all_text_contents())
            idle = "Python 3 (ipykernel) | Idle" in status
            since = (since or time.monotonic()) if idle else None
            time.sleep(0.25)

    def _choose_kernel_if_asked(self) -> None:
        # On a loaded machine JupyterLab may open the notebook before it has the kernel list,
        # and asks which kernel to use: a student would press Select.
        chooser = self.page.locator(".jp-Dialog button:has-text('Select')")
        if chooser.count():
            chooser.first.click()

    def run_notebook(self, name: str) -> str:
        """Open a notebook and Run All Cells; what it shows."""
        self.open(name)
        return self.run_all()

    def menu(self, top: str, item: str) -> None:
        self.page.click(f"div.lm-MenuBar-itemLabel:text-is('{top}')")
        self.page.click(f"li.lm-Menu-item:has-text('{item}')")

    def run_all(self, timeout: float = 150) -> str:
        """Run All Cells, wait until the kernel is idle with no cell pending; what it shows."""
        before = self.last_count()
        for _ in range(3):
            # Right after a page load JupyterLab may still be connecting the kernel and drop
            # the request: a student would click again (running twice is harmless here).
            self._choose_kernel_if_asked()
            self.menu("Run", "Run All Cells")
            if self.started(before):
                break
        return self.wait_until_done(lambda: self.last_count() > before, timeout)

    def started(self, before: int, within: float = 15) -> bool:
        """Whether a cell is pending or has run since the count was `before`."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if (
                self.last_count() > before
                or self.page.locator(".jp-InputPrompt:has-text('[*]')").count()
            ):
                return True
            time.sleep(0.3)
        return False

    def restart_and_run_all(self, timeout: float = 150) -> str:
        """Kernel > Restart Kernel and Run All Cells, confirmed as a student would."""
        self.menu("Kernel", "Restart Kernel and Run All Cells")
        self.page.click(".jp-Dialog button.jp-mod-accept")
        # The counts start again at 1: done when the last cell that runs has a count again.
        self.page.wait_for_selector(".jp-InputPrompt:has-text('[*]')", timeout=30_000)
        return self.wait_until_done(lambda: self.last_count() > 0, timeout)

    def run_cell(self, starting: str) -> str:
        """Click the code cell whose source starts with `starting` and press Shift+Enter."""
        cell = self.page.locator(f"{VISIBLE} .jp-CodeCell", has_text=starting).first
        prompt = cell.locator(".jp-InputPrompt").first
        before = prompt.inner_text()
        cell.locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Shift+Enter")

        def ran() -> bool:  # its own count changed (after a restart it starts again at 1)
            now = prompt.inner_text()
            return now != before and re.search(r"\[\d+\]", now) is not None

        return self.wait_until_done(ran, 60)

    def last_count(self) -> int:
        """The highest execution count the open notebook shows (0 before anything ran)."""
        prompts = self.page.locator(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt"
        ).all_inner_texts()
        return max((int(n) for p in prompts for n in re.findall(r"\[(\d+)\]", p)), default=0)

    def wait_until_done(self, started, timeout: float) -> str:
        """Wait until `started()` holds, no cell is pending and the kernel is idle."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            pending = self.page.locator(".jp-InputPrompt:has-text('[*]')").count()
            idle = self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count()
            if pending == 0 and idle and started():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.0:
                    self.screenshot("last-run")  # what the student saw, for a failing check
                    return self.shown()
            else:
                quiet_since = None
            time.sleep(0.3)
        self.screenshot("timeout")
        raise AssertionError(f"{self.name} still running after {timeout:.0f} s")

    def shown(self) -> str:
        """Every output of the open notebook, as text; never a traceback or a broken widget."""
        # textContent, not innerText: JupyterLab skips laying out cells scrolled out of view.
        text = "\n".join(
            self.page.locator(
                ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output"
            ).all_text_contents()
        )
        assert "Traceback" not in text and "Error displaying widget" not in text, text[-3000:]
        return text

    def kernel_idle(self, within: float) -> bool:
        """Whether the kernel of the tab in front shows idle in the status bar within
        `within` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self._choose_kernel_if_asked()
            status = " ".join(self.page.locator(".jp-StatusBar-Widget").all_text_contents())
            if "Python 3 (ipykernel) | Idle" in status:
                return True
            time.sleep(0.5)
        return False

    def open_tab(self, name: str) -> None:
        """Open a notebook in one more tab, by a double click in the file browser (the tabs
        open before stay open)."""
        self.page.dblclick(f".jp-DirListing-item:has-text('{name}.ipynb')")
        self.page.wait_for_selector(f".lm-DockPanel-tabBar .lm-TabBar-tab:has-text('{name}')")

    def front(self, name: str) -> None:
        """Bring an open tab to the front, as a click on it would."""
        self.name = name
        self.page.click(f".lm-DockPanel-tabBar .lm-TabBar-tab:has-text('{name}')")
        time.sleep(0.5)
        self._choose_kernel_if_asked()

    def terminal(self, command: str, until: str, timeout: float = 60) -> str:
        """Type `command` in a new JupyterLab terminal (File > New > Terminal); its screen
        once `until` shows."""
        count = self.page.locator(".jp-Terminal .xterm").count()
        self.page.click("div.lm-MenuBar-itemLabel:text-is('File')")
        self.page.hover("li.lm-Menu-item:has-text('New')")
        self.page.click("li.lm-Menu-item[data-command='terminal:create-new']")
        xterm = self.page.locator(".jp-Terminal .xterm").nth(count)  # the new one
        xterm.wait_for(timeout=30_000)
        # The terminal's text as a screen reader gets it (lab.env turns that mode on).
        screen = xterm.locator(".xterm-accessibility-tree")
        deadline = time.monotonic() + 30
        while "$" not in screen.inner_text() and time.monotonic() < deadline:
            time.sleep(0.3)  # the shell's prompt
        xterm.click()
        self.page.keyboard.type(command + "\n")
        deadline = time.monotonic() + timeout
        while until not in (text := screen.inner_text()) and time.monotonic() < deadline:
            time.sleep(0.3)
        self.name = "terminal"
        self.screenshot(command.replace(" ", "-"))
        assert until in text, text
        return text

    def screenshot(self, label: str) -> None:
        self.page.screenshot(path=str(self.lab.screenshots / f"{self.name}-{label}.png"))

    def show_cell(self, starting: str) -> None:
        """Scroll the code cell whose source starts with `starting` to the top of the view."""
        cell = self.page.locator(f"{VISIBLE} .jp-CodeCell", has_text=starting).first
        cell.evaluate("node => node.scrollIntoView({block: 'start'})")
        time.sleep(0.5)


def serial_log(home: Path) -> str:
    return (home / "boards" / "default" / "serial.log").read_text(errors="replace")


def readings(said: str) -> int:
    """How many readings the wait cell reported ("12 new readings from ..."), 0 if none."""
    found = re.search(r"(\d+) new readings from", said)
    return int(found.group(1)) if found else 0


def plot_points(page) -> int:
    path = page.locator(".bqplot path.line").first.get_attribute("d") or ""
    return path.count("L") + (1 if path.startswith("M") else 0)


@pytest.mark.timeout(900)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_a_student_walks_the_course_and_its_wrong_turns(lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    token = lab.token
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        student = Student(page, lab, token)

        # 04 on a fresh data folder, before 01: a sentence that says where to start.
        said = student.run_notebook("04_run_prototype")
        assert "There is no current device yet" in said and "notebooks 01 and 02" in said
        assert "The virtual board is not running: run course.start() in notebook 00." in said
        student.screenshot("fresh-folder")

        # 00: the diagram loads (an attachment: no request outside the notebook).
        said = student.run_notebook("00_setup")
        assert "The course uses the virtual board and the local cloud." in said
        assert "The local cloud runs on" in said and "CSR sketch" in said
        flow = page.locator(".jp-RenderedMarkdown img").first
        assert flow.evaluate("img => img.complete && img.naturalWidth > 0")
        page.locator(".jp-RenderedMarkdown img").first.scroll_into_view_if_needed()
        student.screenshot("1024x768")

        # 01, with the whole lock warning readable; then run again: the key stays.
        said = student.run_notebook("01_generate_csr")
        assert "Here's your CSR, enjoy!" in said and "valid: made with the private key" in said
        label = page.locator(".widget-checkbox .widget-label-basic").first
        assert "permanent: lock the chip" in label.inner_text()
        assert label.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), "label cut off"
        said = student.run_all()
        assert "This board's key is registered already" not in said  # not registered yet
        said = student.run_notebook("02_register_thing")
        assert "Registered" in said and "carries this CSR's public key" in said
        picture = page.locator(".jp-RenderedMarkdown img[alt^='Mutual TLS']")
        assert picture.evaluate("img => img.complete && img.naturalWidth > 0")
        said = student.run_notebook("01_generate_csr")
        assert "This board's key is registered already, so the chip keeps it" in said
        student.show_cell("consent = course.lock_consent()")
        student.screenshot("1024x768")
        said = student.run_notebook("02_register_thing")
        assert "Already registered (the same key)" in said  # no dead end
        student.show_cell("certificate = certs.load_certificate")
        student.screenshot("1024x768")

        # 03: a short summary, the whole file on request.
        said = student.run_notebook("03_configure_sketch")
        assert "No WiFi name given" in said and "password set (masked)" in said
        assert "The virtual board now runs the AWS firmware" in said
        student.show_cell("rendered = course.configure(wifi)")
        student.screenshot("1024x768")

        # 00 again (the next day): starting never undoes 03.
        said = student.run_notebook("00_setup")
        assert "runs the AWS firmware flashed in notebook 03" in said

        # 04: the live plot fills, the LED follows the code and the On button.
        said = student.run_notebook("04_run_prototype")
        assert "Published things/" in said and readings(said) >= 3, said  # the board's log
        first = plot_points(page)
        time.sleep(4)  # the virtual board publishes every second
        assert plot_points(page) > first >= 3, "the live plot did not gain points"
        page.wait_for_selector("text=the device shows: 40 %", timeout=60_000)
        assert "LED: 40%" in serial_log(lab.home)
        page.click("button:has-text('On')")
        page.wait_for_selector("text=the device shows: 100 %", timeout=30_000)
        assert "LED: 100%" in serial_log(lab.home)

        # A kernel restart mid-course: everything comes back.
        said = student.restart_and_run_all()
        assert readings(said) >= 3, said

        # A second device (registered from a terminal) becomes current; the drop-down picks
        # the board that is running.
        other = tmp_path / "greenhouse_2.csr"
        other.write_text(csr_pem("greenhouse_2"))
        registered = subprocess.run(
            [sys.executable, "-m", "kit.cli", "register", str(other)],
            env=lab.env,
            capture_output=True,
            text=True,
        )
        assert "greenhouse_2 is now the current device" in registered.stdout, registered.stderr
        said = student.run_cell("view = course.dashboard()")
        assert "Board greenhouse_2:" in said and "waiting for its first reading" in said
        picker = page.locator(".widget-dropdown select").first
        options = picker.locator("option").all_inner_texts()
        assert options[0] == "greenhouse_2" and len(options) == 2
        board = options[1]
        picker.select_option(board)
        page.wait_for_selector(f".bqplot text.mainheading:has-text('{board}')", timeout=10_000)
        deadline = time.monotonic() + 20
        while plot_points(page) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert plot_points(page) >= 3, "the picked device's readings did not show"
        page.wait_for_selector("text=the device last reported 40 %", timeout=10_000)
        assert page.locator(".widget-readout").first.inner_text() == "40"  # the slider agrees
        student.show_cell("view = course.dashboard()")
        student.screenshot("1024x768")

        # 05: one device's CSR, certificate and policy (the current one: greenhouse_2).
        said = student.run_notebook("05_look_inside")
        assert "greenhouse_2: registered in the local cloud" in said
        assert "is not allowed" in said  # the broker refusing a forbidden topic
        student.show_cell("inside = course.look_inside()")
        student.screenshot("1024x768")
        # After the whole walk, JupyterLab has not asked about its news: nothing covers a cell.
        assert not page.locator(".jp-Notification-Toast").count()
        browser.close()

    not_found = [line for line in lab.log_text().splitlines() if " 404 " in line]
    assert not not_found, "\n".join(not_found)


def time_labels_apart(page) -> list[str]:
    """The time axis' tick labels of the dashboard in front, checked to stand apart (no label
    touches the next, none is cut off by the plot's edge); the labels."""
    found = page.evaluate(
        """() => {
        const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
        const figure = panel.querySelector('.bqplot');
        const frame = figure.getBoundingClientRect();
        for (const axis of figure.querySelectorAll('g.axis')) {
            const ticks = [...axis.querySelectorAll('.tick text')]
                .map(t => ({text: t.textContent, box: t.getBoundingClientRect()}))
                .filter(t => t.box.width > 0);
            const ys = new Set(ticks.map(t => Math.round(t.box.top)));
            if (ticks.length < 2 || ys.size !== 1) continue;  // a value axis: labels stacked
            ticks.sort((a, b) => a.box.left - b.box.left);
            return {
                labels: ticks.map(t => t.text),
                gaps: ticks.slice(1).map((t, i) => t.box.left - ticks[i].box.right),
                inside: ticks.every(t => t.box.left >= frame.left && t.box.right <= frame.right),
                width: frame.width,
            };
        }
        return null;
    }"""
    )
    assert found is not None, "no time axis with two labels or more"
    assert min(found["gaps"]) >= 8 and found["inside"], found
    return found["labels"]


def board_firmware(home: Path) -> str:
    return json.loads((home / "boards" / "default" / "board.json").read_text())["firmware"]


@pytest.mark.timeout(900)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_day_two_a_student_reopens_the_course(lab: Lab) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        student = Student(page, lab, lab.token)
        for name in ("00_setup", "01_generate_csr", "02_register_thing", "03_configure_sketch"):
            student.run_notebook(name)

        # 04: new readings, the LED's own answer, and a time axis that reads at any width.
        said = student.run_notebook("04_run_prototype")
        assert readings(said) >= 3 and "answered: its LED is at 40 %" in said, said
        page.wait_for_selector(f"{VISIBLE} .kit-live:has-text('Board ')")
        status = page.locator(f"{VISIBLE} .kit-live").first.inner_text()
        assert "connected ·" in status.splitlines()[0] and "This notebook: connected" in status
        time.sleep(12)  # a few more readings: the axis spans more than ten seconds
        assert len(time_labels_apart(page)) >= 2
        student.show_cell("view = course.dashboard()")
        page.mouse.move(10, 700)  # the plot's toolbar shows only under the pointer
        student.screenshot("dashboard-1024x768")
        page.set_viewport_size({"width": 1600, "height": 900})
        time.sleep(1)
        time_labels_apart(page)
        page.set_viewport_size(VIEWPORT)

        # A kernel restart: the old dashboard says it is dead, the next cell says what to do.
        student.menu("Kernel", "Restart Kernel…")
        page.click(".jp-Dialog button.jp-mod-accept")
        note = page.locator(f"{VISIBLE} .kit-gone").first
        note.wait_for(state="visible", timeout=30_000)
        assert "The kernel restarted or stopped" in note.inner_text()
        assert not page.locator(f"{VISIBLE} .kit-live").first.is_visible()
        student.show_cell("view = course.dashboard()")
        student.screenshot("kernel-restarted")
        said = student.run_cell("course.wait_for_readings(view, 3)")
        assert "Run the notebook from the top" in said and "from kit import course" in said

        # 01 again puts the CSR sketch back on the board: 04 counts nothing old as new.
        student.run_notebook("01_generate_csr")
        assert board_firmware(lab.home) == "csr"
        said = student.run_notebook("04_run_prototype")
        assert "No new reading from" in said and "still runs the CSR sketch" in said, said
        assert "has not answered the LED command" in said and "is at 40 %" not in said
        assert "new readings from" not in said

        # 03 with a password one character short: refused, and the field keeps it, masked.
        student.run_notebook("03_configure_sketch")
        field = page.locator(f"{VISIBLE} input[type=password]").first
        field.fill("seven77")
        said = student.run_cell("rendered = course.configure(wifi)")
        assert "7 characters" in said and "seven77" not in said, said
        assert field.input_value() == "seven77"
        page.keyboard.press("Control+s")  # saved with the password still in its field
        time.sleep(2)
        saved = (lab.folder / "03_configure_sketch.ipynb").read_text()
        assert "seven77" not in saved
        field.fill("")  # the virtual board needs none
        said = student.run_cell("rendered = course.configure(wifi)")
        assert "The virtual board now runs the AWS firmware" in said
        assert board_firmware(lab.home) == "aws"

        # `kit stop` from a JupyterLab terminal (a login shell: JupyterLab's output is a file)
        # while 04 watches: the dashboard no longer claims to know the board.
        said = student.run_notebook("04_run_prototype")
        assert readings(said) >= 3, said
        shown = student.terminal("kit stop", until="Stopped the local cloud.")
        assert "command not found" not in shown
        student.front("04_run_prototype")
        page.wait_for_selector(
            f"{VISIBLE} .kit-live:has-text('not connected to the broker')", timeout=30_000
        )
        status = page.locator(f"{VISIBLE} .kit-live").first.inner_text()
        assert "not known while this notebook is not connected" in status
        said = student.run_cell("course.wait_for_readings(view, 3)")
        assert "The local cloud is not running" in said.split("wait_for_readings")[-1]

        # `kit csr` in a terminal with nothing running: it starts the virtual board itself.
        shown = student.terminal("kit csr", until="-----END CERTIFICATE REQUEST-----")
        assert "the kit started it" in shown and board_firmware(lab.home) == "csr"

        # The next day: six notebooks were open; JupyterLab starts their kernels together.
        page.goto(f"{lab.url}/lab?reset&token={lab.token}")
        names = list(demo.COURSE)  # 00 to 05
        for name in names:
            student.open_tab(name)
        time.sleep(2)  # the workspace is saved
        lab.stop()
        lab.start()
        student.token = lab.token
        page.goto(f"{lab.url}/lab?token={lab.token}")
        for name in names:
            page.wait_for_selector(f".lm-DockPanel-tabBar .lm-TabBar-tab:has-text('{name}')")
        restarted = []
        for name in names:
            student.front(name)
            if not student.kernel_idle(within=90):
                # Jupyter picks a TCP kernel's ports before the kernel binds them, and now and
                # then another program takes one in between ("Address already in use"): the
                # kernel never comes up. Restart Kernel helps, as a student would find.
                restarted.append(name)
                student.menu("Kernel", "Restart Kernel…")
                page.click(".jp-Dialog button.jp-mod-accept")
                assert student.kernel_idle(within=90), f"{name}: no kernel after a restart"
            student.run_cell("from kit import")
            first = page.locator(f"{VISIBLE} .jp-CodeCell .jp-InputPrompt").first.inner_text()
            assert "[1]" in first, f"{name}: its first cell did not run in a new kernel"
        assert len(restarted) <= 1, restarted
        student.screenshot("six-tabs")
        assert "Invalid Signature" not in lab.log_text()
        browser.close()
