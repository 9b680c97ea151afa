"""`kit demo`: run the whole course headless on the defaults, and say what happened.

It uses its own data folder under build/, so it never disturbs the student's own devices,
executes every notebook in order, writes the executed notebooks and an HTML export to build/,
and ends with a summary read from what actually happened.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from traitlets.config import Config

from kit import environment, lab, steps
from kit.places import checkout, using_home

COURSE = (
    "00_setup",
    "01_generate_csr",
    "02_register_thing",
    "03_configure_sketch",
    "04_run_prototype",
    "05_look_inside",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return cast(int, probe.getsockname()[1])


def run(
    build: Path | None = None,
    progress: Callable[[str], None] = print,
    notebooks: tuple[str, ...] = COURSE,
    stop: bool = True,
    prepare: Callable[[dict[str, str]], None] | None = None,
) -> int:
    """Run the course; return 0 if every step worked, 1 otherwise (the failing step is named).

    With `stop=False` the virtual board and the local cloud keep running afterwards (in
    build/kit-home), for a person, or a browser test, to carry on from there. `prepare` gets
    the kernels' environment before the first notebook and may change it (log in to a class
    and set KIT_CLOUD=class, say).
    """
    build = Path(build or checkout() / "build")
    home = build / "kit-home"
    if home.exists():
        shutil.rmtree(home)
    for folder in ("notebooks", "html"):
        (build / folder).mkdir(parents=True, exist_ok=True)
    # The kernels get the demo's settings in their environment; this process keeps its own.
    kernel_env = {
        **os.environ,
        "KIT_HOME": str(home),
        "KIT_HEADLESS": "1",  # plot cells also leave a static image
        "KIT_PUBLISH_INTERVAL": environment.settings_overrides().get("interval", "1"),
        "KIT_CONFIG_H": str(build / "config.h"),
        "KIT_BROKER_PORT": str(_free_port()),
        "KIT_BROKER_WS_PORT": str(_free_port()),
    }
    failed = None
    started = time.monotonic()
    with using_home(home):
        try:
            if prepare is not None:
                prepare(kernel_env)
            for name in notebooks:
                step = time.monotonic()
                progress(f"{name} ...")
                ok = _execute(name, build, kernel_env)
                progress(f"{name} {'ok' if ok else 'FAILED'} ({time.monotonic() - step:.0f} s)")
                if not ok:
                    failed = name
                    break
            progress(summary(build, failed, time.monotonic() - started))
        finally:
            if stop:
                steps.stop_everything()
    return 0 if failed is None else 1


def notebook_client(notebook: nbformat.NotebookNode, folder: Path) -> NotebookClient:
    """A client that runs `notebook` in `folder` on a fresh kernel, as JupyterLab would: over
    TCP on 127.0.0.1 with CurveZMQ encryption (kit.lab.KERNELS)."""
    return NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
        store_widget_state=False,  # widget state could hold a password
        config=Config({"KernelManager": dict(lab.KERNELS)}),
    )


def _execute(name: str, build: Path, env: dict[str, str]) -> bool:
    source = checkout() / "notebooks" / f"{name}.ipynb"
    notebook = nbformat.read(source, as_version=4)
    client = notebook_client(notebook, source.parent)
    ok = True
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        ok = False
        (build / f"{name}.error.txt").write_text(str(error)[-4000:], encoding="utf-8")
    nbformat.write(notebook, build / "notebooks" / f"{name}.ipynb")
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(notebook)
    (build / "html" / f"{name}.html").write_text(body, encoding="utf-8")
    return ok


def summary(build: Path, failed: str | None, seconds: float) -> str:
    """What happened, read from the device record, the recorder and the board's log."""
    from kit import devices
    from kit.cloud.local import LocalCloud
    from kit.errors import KitError

    lines = [
        f"Course run in {seconds:.0f} s: "
        + (f"FAILED at {failed}" if failed else "every step worked")
    ]
    try:
        record = devices.load()
        lines.append(
            f"- CSR captured and registered: {record.thing} "
            f"({record.cloud} cloud, slot {record.slot})"
        )
        cloud = LocalCloud()
        readings = cloud.messages(record.thing, topic_suffix="/environment")
        states = cloud.messages(record.thing, topic_suffix="/led/state")
        lines.append(f"- messages recorded from the device: {len(readings)}")
        lines.append(
            "- LED round trip: "
            + (
                f"the device reported {states[-1].payload.decode()} %"
                if states
                else "no led/state message"
            )
        )
    except KitError as error:
        lines.append(f"- no device registered ({error})")
    lines.append(f"Executed notebooks: {build / 'notebooks'}; HTML: {build / 'html'}")
    if failed:
        lines.append(f"What went wrong: {build / (failed + '.error.txt')}")
    return "\n".join(lines)
