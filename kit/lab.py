"""How the kit starts JupyterLab and notebook kernels for the course.

`kit lab` serves the student's copies of the notebooks (kit.notebook_copies), opens 00_setup,
and starts kernels that talk to it over TCP on 127.0.0.1, encrypted with CurveZMQ keys the kernel
manager makes for each kernel; `kit demo` runs its kernels the same way (KERNELS). JupyterLab's
news prompt and update check are off: a classroom may be offline, and a pop-up covers the
notebook on a projector. Its terminals are shells that find the `kit` command.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import webbrowser
from pathlib import Path

from kit import environment, kernel_hints, saved_notebooks
from kit.places import write_private

# The kernels' KernelManager settings, for JupyterLab and for `kit demo` alike. One transport on
# every system: local sockets (ipc) are numbered by looking for existing socket files, so kernels
# started together (JupyterLab reopening its tabs) took the same ones ("Invalid Signature",
# kernels stuck connecting), and Windows has none. TCP ports come from the manager's port cache,
# which never hands one out twice. On plain TCP any program on the computer (another user's, on a
# shared one) could connect to a kernel's ports and read what it shows, so the manager makes
# CurveZMQ keys for each kernel; "required" makes a kernel that cannot encrypt fail to start,
# where "auto" would run it in the clear.
KERNELS = {"transport": "tcp", "ip": "127.0.0.1", "transport_encryption": "required"}


def kernel_arguments() -> list[str]:
    """KERNELS as JupyterLab command-line options."""
    return [f"--KernelManager.{name}={value}" for name, value in KERNELS.items()]


def terminal_arguments(home: Path) -> list[str]:
    """JupyterLab's terminal shell, as command-line options: the user's $SHELL, interactive but
    not a login shell, so that `kit` (the first folder on the PATH kit lab hands JupyterLab) is
    found. Without this JupyterLab starts a login shell whenever its output is not a terminal
    (started by a launcher, by CI, with its output piped), and a login shell's /etc/profile
    sets PATH afresh.

    bash and zsh (macOS's shell) also get start-up files in the data folder (`home`): the
    user's own, then the kit's folder first on PATH again, so even a .bashrc or .zshrc that sets
    PATH (or activates a conda environment) keeps `kit`. Windows needs nothing: PowerShell
    inherits PATH, and JupyterLab never asks for a login shell there.
    """
    if os.name == "nt":
        return []
    # The shell JupyterLab itself would start.
    shell = environment.user_shell() or shutil.which("sh") or "/bin/sh"
    argv = [shell, "-i"]
    bin_dir = Path(sys.executable).parent
    if Path(shell).name == "bash":
        bashrc = home / "lab" / "bashrc"
        write_private(bashrc, terminal_bashrc(bin_dir))
        argv = [shell, "--rcfile", str(bashrc), "-i"]
    elif Path(shell).name == "zsh":
        # zsh has no --rcfile: it reads its start-up files from $ZDOTDIR.
        folder = home / "lab" / "zsh"
        for name, text in terminal_zsh_files(bin_dir).items():
            write_private(folder / name, text)
        argv = [shutil.which("env") or "/usr/bin/env", f"ZDOTDIR={folder}", shell, "-i"]
    # A list (a Python literal to traitlets), so no path is split or unquoted on the way.
    return [f"--ServerApp.terminado_settings=shell_command={argv!r}"]


def terminal_bashrc(bin_dir: Path) -> str:
    """The rcfile of bash in JupyterLab's terminals: the user's own, then `kit` first on PATH."""
    return (
        "# Written by `kit lab` for the bash of JupyterLab's terminals (rewritten at each start).\n"
        "# bash reads this instead of ~/.bashrc, so: yours first, then the kit's folder first on\n"
        "# PATH, in case yours sets PATH.\n"
        'if [ -f "$HOME/.bashrc" ]; then . "$HOME/.bashrc"; fi\n'
        f'PATH={shlex.quote(str(bin_dir))}:"$PATH"\n'
    )


def terminal_zsh_files(bin_dir: Path) -> dict[str, str]:
    """The .zshenv and .zshrc zsh reads in JupyterLab's terminals (ZDOTDIR points at them):
    the user's own (from the ZDOTDIR their .zshenv may choose), then `kit` first on PATH."""
    note = (
        "# Written by `kit lab` for the zsh of JupyterLab's terminals (rewritten at each start).\n"
    )
    return {
        ".zshenv": note
        + "_kit_zdotdir=$ZDOTDIR\n"
        + 'ZDOTDIR=$HOME; if [ -f "$HOME/.zshenv" ]; then . "$HOME/.zshenv"; fi\n'
        + "KIT_USER_ZDOTDIR=${ZDOTDIR:-$HOME}; ZDOTDIR=$_kit_zdotdir; unset _kit_zdotdir\n",
        ".zshrc": note
        + "ZDOTDIR=$KIT_USER_ZDOTDIR; unset KIT_USER_ZDOTDIR\n"
        + 'if [ -f "$ZDOTDIR/.zshrc" ]; then . "$ZDOTDIR/.zshrc"; fi\n'
        + f'PATH={shlex.quote(str(bin_dir))}:"$PATH"\n',
    }


# The course's JupyterLab defaults: no "official Jupyter news?" prompt and no update check. A
# student's own settings still win over these.
QUIET = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    # A saved notebook keeps no widget state (JupyterLab's default, kept where a site-wide
    # setting would change it): a WiFi password typed in notebook 03's field (and kept there
    # while it is refused) never reaches the file.
    "@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": False},
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


def kernel_spec(home: Path) -> Path:
    """Write the course's own `python3` kernelspec in the data folder `home`; return the folder
    to put first on JUPYTER_PATH, where JupyterLab finds it before any other `python3`.

    It is this environment's Python with the kit's hints for a cell run too early
    (kit.kernel_hints), and it declares the CurveZMQ encryption that KERNELS requires: an older
    `python3` kernelspec left in the student's own Jupyter folder (which would otherwise come
    first) cannot stop kernels from starting. Nothing is written outside the data folder.
    """
    folder = home / "lab" / "jupyter"
    spec = {
        "argv": [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            f"--ext={kernel_hints.EXTENSION}",
        ],
        "display_name": "Python 3 (ipykernel)",  # the name the notebooks were saved with
        "language": "python",
        "metadata": {"debugger": True, "supported_encryption": ["curve"]},
        "kernel_protocol_version": "5.5",
    }
    write_private(folder / "kernels" / "python3" / "kernel.json", json.dumps(spec, indent=1) + "\n")
    return folder


def browser_here() -> bool:
    """Whether this computer can open a web browser (a server or a container cannot)."""
    try:
        webbrowser.get()  # what JupyterLab itself uses
    except webbrowser.Error:
        return False
    return True


def command(folder: Path, home: Path, port: int | None, open_browser: bool) -> list[str]:
    """The JupyterLab command line for the course in `folder`, with data folder `home` (where
    the terminals' bashrc is written)."""
    line = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={folder}",
        "--LabApp.default_url=/lab/tree/00_setup.ipynb",  # the course starts there
        "--LabApp.news_url=None",  # fetch no news (the prompt itself is in QUIET)
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
    ]
    line += kernel_arguments()
    line += terminal_arguments(home)
    # Saved notebooks keep no live widget, which reads as an error once reopened.
    line.append(f"--ContentsManager.pre_save_hook={saved_notebooks.HOOK}")
    if port:
        line.append(f"--ServerApp.port={port}")
    if not open_browser:
        line.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers and CI run as root; JupyterLab refuses that unless told it is deliberate.
        line.append("--allow-root")
    return line
