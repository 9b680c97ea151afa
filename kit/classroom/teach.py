"""The instructor's notebook (notebooks/instructor_class.ipynb): start the class, add the
roster, watch the class table and every board.

Nothing secret reaches the notebook: the instructor's own password and the students' go only
to printable handouts (0600 files in the class folder); the notebook shows where they are. The
site runs as a background process of its own, so it outlives the kernel.
"""

from __future__ import annotations

import asyncio
import html
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from kit import background, environment
from kit.classroom import ownership, roster, server, site_process
from kit.classroom.store import ClassStore, open_store
from kit.cloud import Cloud
from kit.course import Notice
from kit.errors import ClassError, KitError
from kit.printable import printable
from kit.telemetry import Reading, decode

REFRESH_SECONDS = 5.0
MODULE = "kit.classroom"  # the site as a background process (kit/classroom/__main__.py)


def start(host: str = "", broker_host: str = "") -> Notice:
    """Create the class if there is none, and run its site in the background; say where."""
    folder = server.class_folder()
    port = environment.read().class_port or server.SITE_PORT
    if not (folder / "class.db").exists():
        created = server.init(folder, host or server.default_host(), port)
        card = roster.Card("Instructor", created.username, created.password)
        roster.handout([card], created.address, created.fingerprint, folder / "instructor.html")
    if _running(folder) is None:
        env = environment.read()
        command = [sys.executable, "-m", MODULE, "--folder", str(folder)]
        command += ["--port", str(port)] + (["--broker-host", broker_host] if broker_host else [])
        # A background process is given KIT_HOME only: the broker's ports go on its command line.
        if env.broker_port:
            command += ["--broker-port", str(env.broker_port)]
        if env.broker_ws_port:
            command += ["--broker-ws-port", str(env.broker_ws_port)]
        background.launch(
            site_process(folder),
            command,
            60.0,
            lambda reason: ClassError(
                f"The class site did not start: {reason}. Is port {port} taken by another program?"
            ),
        )
        _wait_for_site(port, folder)
    with open_store(folder) as store:
        address, fingerprint = store.fact("address") or "", store.fact("fingerprint") or ""
    return Notice(
        f"The class site runs at {address} (certificate fingerprint {fingerprint}). Your own "
        f"login is on {folder / 'instructor.html'}; `kit class roster list` shows the class."
    )


def stop() -> Notice:
    """Stop the class site (the class and its devices stay)."""
    if not background.stop(site_process(server.class_folder())):
        return Notice("The class site was not running.")
    return Notice("The class site is stopped; start() runs it again with everything kept.")


def add_roster(csv_file: str | Path) -> Notice:
    """Accounts for every student of the roster; say where their cards are."""
    cards, handout = server.add_roster(server.class_folder(), Path(csv_file), only_new=True)
    if handout is None:
        return Notice("Every student of the roster has an account already.")
    return Notice(
        f"Added {len(cards)} student(s). Print their cards (passwords are only there): "
        f"{handout.as_uri()}"
    )


class ClassTable(widgets.HTML):  # type: ignore[misc]  # ipywidgets is untyped
    """The class at a glance, refreshed every few seconds: each student, their CSR, their
    devices, connected or not, and the last reading of each."""

    def __init__(self) -> None:
        super().__init__()
        self._task: asyncio.Task[None] | None = None
        self.refresh()

    def refresh(self) -> None:
        folder = server.class_folder()
        try:
            cloud = server.open_class_cloud(folder, env=environment.read())
            with open_store(folder) as store:
                rows = ownership.class_rows(store, cloud)
                self.value = _table(rows, cloud, store)
        except KitError as error:  # the table says so, and the next round tries again
            self.value = f"<p>⚠️ {html.escape(printable(str(error)))}</p>"

    def start(self) -> ClassTable:
        """Refresh on the kernel's event loop until stop()."""

        async def run() -> None:
            while True:
                await asyncio.sleep(REFRESH_SECONDS)
                self.refresh()

        self._task = asyncio.get_event_loop().create_task(run())
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def live_view() -> Notice:
    """Where the live view of every board is: the class site, in a browser tab of its own
    (its pages refuse to be framed, so it cannot show inside the notebook)."""
    with open_store(server.class_folder()) as store:
        address = store.fact("address") or ""
    return Notice(
        f"Every board, live, with its chart: open {address}class/live in your browser and log "
        "in with your card. The table above shows each board's last reading here too."
    )


def class_table() -> Any:
    """The class table, kept up to date while the notebook is open (where no front end draws
    widgets, KIT_HEADLESS=1, the table as it is now)."""
    table = ClassTable()
    if environment.headless():
        from IPython.display import HTML

        return HTML(table.value)  # type: ignore[no-untyped-call]  # IPython: unannotated
    return table.start()


def _table(rows: list[dict[str, Any]], cloud: Cloud, store: ClassStore) -> str:
    """The class table as HTML, every name and value escaped."""

    def e(value: object) -> str:
        return html.escape(printable(str(value)))

    lines = [
        "<table><tr><th>Student</th><th>CSR</th><th>Device</th><th>State</th>"
        "<th>Last reading</th></tr>"
    ]
    for row in rows:
        name, csr = e(row["account"].name), "yes" if row["csr"] else "no"
        if not row["devices"]:
            lines.append(f"<tr><td>{name}</td><td>{csr}</td><td>—</td><td>not registered</td>")
            lines.append("<td></td></tr>")
        for device in row["devices"]:
            state = STATES[device["connected"]]
            reading = _last_reading(cloud, device["thing"], store.registered_at(device["thing"]))
            lines.append(
                f"<tr><td>{name}</td><td>{csr}</td><td><code>{e(device['thing'])}</code></td>"
                f"<td>{state}</td><td>{e(reading)}</td></tr>"
            )
    lines.append("</table>")
    return "".join(lines)


STATES = {True: "connected", False: "not connected", None: "registered"}


def _last_reading(cloud: Cloud, thing: str, since: float | None) -> str:
    """The device's last reading since it became its owner's, as a sentence."""
    latest = cloud.history(thing, since=since, latest=1, topic_suffix="/environment")
    if not latest:
        return "none yet"
    event = decode(latest[-1].topic, latest[-1].payload, latest[-1].received)
    if not isinstance(event, Reading):
        return "not readable"
    moment = time.strftime("%H:%M:%S", time.localtime(event.time))
    return f"{event.temperature:.1f} °F, {event.humidity:.0f} % at {moment}"


def _running(folder: Path) -> int | None:
    state = background.running(site_process(folder))
    return None if state is None else int(state["pid"])


def _wait_for_site(port: int, folder: Path, timeout: float = 60.0) -> None:
    """Wait until the site answers on `port`; stop it and say why if it does not."""
    site = site_process(folder)
    deadline = time.monotonic() + timeout
    while True:
        try:
            ssl.get_server_certificate(("127.0.0.1", port), timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline or _running(folder) is None:
                background.stop(site)  # never left half-started in the background
                raise ClassError(
                    f"The class site did not start: {background.last_line(site.log)} (its "
                    f"output: {site.log}). Is port {port} taken by another program?"
                ) from None
            time.sleep(0.3)
