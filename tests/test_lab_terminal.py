"""A terminal opened in `kit lab`'s JupyterLab finds the kit's own `kit` command.

JupyterLab's output here goes to a file, not a terminal (as under a launcher or CI): left to
itself JupyterLab then starts login shells, whose /etc/profile sets PATH afresh and loses `kit`.
Each test opens a terminal through the REST API and asks the shell over terminado's websocket.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from lab_server import Lab, running_lab
from websockets.sync.client import connect

KIT = str(Path(sys.executable).parent / "kit")
ASK = 'echo "kit=[$(command -v kit)] marker=[$FROM_BASHRC$FROM_ZSHRC]"\r'
ANSWER = re.compile(r"kit=\[([^]$]*)\] marker=\[([^]$]*)\]")


def ask_a_terminal(jl: Lab) -> tuple[str, str]:
    """Open a terminal, ask where `kit` is; the path it names and $FROM_BASHRC."""
    name = jl.api("POST", "/api/terminals").json()["name"]
    try:
        with connect(jl.websocket_url(f"/terminals/websocket/{name}"), open_timeout=30) as ws:
            shown, asked, deadline = "", False, time.monotonic() + 30
            while not (found := ANSWER.search(shown)):
                assert time.monotonic() < deadline, f"no answer from the terminal: {shown!r}"
                try:
                    kind, *content = json.loads(ws.recv(timeout=1))
                except TimeoutError:
                    kind, content = "", []
                if kind == "stdout":
                    shown += content[0]
                if not asked and (shown or kind == ""):  # a prompt, or a quiet shell
                    ws.send(json.dumps(["stdin", ASK]))
                    asked = True
            return found.group(1), found.group(2)
    finally:
        jl.api("DELETE", f"/api/terminals/{name}")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("shell", ["/bin/bash", "/bin/sh"])
def test_a_terminal_finds_kit(shell: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHELL", shell)
    home = tmp_path / "user"
    home.mkdir()
    with running_lab(tmp_path, {"HOME": str(home)}) as jl:
        assert ask_a_terminal(jl) == (KIT, "")


@pytest.mark.timeout(90)
def test_kit_stays_first_when_the_users_bashrc_sets_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHELL", "/bin/bash")
    home = tmp_path / "user"
    home.mkdir()
    (home / ".bashrc").write_text("PATH=/usr/bin:/bin\nFROM_BASHRC=read\n")
    with running_lab(tmp_path, {"HOME": str(home)}) as jl:
        # The student's .bashrc still runs (its marker), and `kit` is the kit's all the same.
        assert ask_a_terminal(jl) == (KIT, "read")


@pytest.mark.timeout(90)
@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_kit_stays_first_when_the_users_zshrc_sets_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # macOS's shell; the student's start-up files in a folder of their choosing (ZDOTDIR).
    monkeypatch.setenv("SHELL", shutil.which("zsh"))
    home = tmp_path / "user"
    (home / ".config" / "zsh").mkdir(parents=True)
    (home / ".zshenv").write_text('ZDOTDIR="$HOME/.config/zsh"\n')
    (home / ".config" / "zsh" / ".zshrc").write_text("PATH=/usr/bin:/bin\nFROM_ZSHRC=read\n")
    with running_lab(tmp_path, {"HOME": str(home)}) as jl:
        assert ask_a_terminal(jl) == (KIT, "read")
