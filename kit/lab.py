"""How the kit starts JupyterLab and notebook kernels for the course.

`kit lab` serves the student's copies of the notebooks (kit.notebook_copies), opens 00_setup,
and starts kernels that talk to it over local sockets in the private data folder instead of
unencrypted TCP on 127.0.0.1. JupyterLab's news prompt and update check are off: a classroom may
be offline, and a pop-up covers the notebook on a projector. `kit demo` runs its kernels the
same way.
"""

from __future__ import annotations

import json
import os
import sys
import webbrowser
from pathlib import Path

from kit.places import private_dir

# A socket's path holds ~104 bytes (macOS; 108 on Linux), and each kernel adds "-<n>".
SOCKET_PATH_LIMIT = 90


def kernel_sockets(home: Path) -> Path | None:
    """The prefix of the kernels' local sockets in `home`, or None to keep TCP (Windows, or a
    path too long for a socket)."""
    if os.name != "posix":
        return None
    prefix = home / "kernels" / "k"
    if len(os.fsencode(prefix)) >= SOCKET_PATH_LIMIT:
        return None
    private_dir(prefix.parent)
    return prefix


# The course's JupyterLab defaults: no "official Jupyter news?" prompt and no update check. A
# student's own settings still win over these.
QUIET = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}
}


def overrides_file() -> Path:
    """The kit's own settings overrides, where JupyterLab in this environment reads packages'
    overrides (<app dir>/settings/overrides.d/)."""
    return (
        Path(sys.prefix)
        / "share"
        / "jupyter"
        / "lab"
        / "settings"
        / "overrides.d"
        / "iot-x509-kit.json"
    )


def quiet_jupyterlab() -> None:
    """Write the kit's overrides file if it is missing or out of date (never anyone else's)."""
    path, text = overrides_file(), json.dumps(QUIET, indent=2) + "\n"
    try:
        if path.exists() and path.read_text(encoding="utf-8") == text:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError:
        pass  # a read-only installation: JupyterLab then asks about its news, nothing worse


def browser_here() -> bool:
    """Whether this computer can open a web browser (a server or a container cannot)."""
    try:
        webbrowser.get()  # what JupyterLab itself uses
    except webbrowser.Error:
        return False
    return True


def command(folder: Path, home: Path, port: int | None, open_browser: bool) -> list[str]:
    """The JupyterLab command line for the course in `folder`, with data folder `home`."""
    line = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={folder}",
        "--LabApp.default_url=/lab/tree/00_setup.ipynb",  # the course starts there
        "--LabApp.news_url=None",  # fetch no news (the prompt itself is in QUIET)
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
    ]
    sockets = kernel_sockets(home)
    if sockets is not None:
        line += ["--KernelManager.transport=ipc", f"--KernelManager.ip={sockets}"]
    if port:
        line.append(f"--ServerApp.port={port}")
    if not open_browser:
        line.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers and CI run as root; JupyterLab refuses that unless told it is deliberate.
        line.append("--allow-root")
    return line
