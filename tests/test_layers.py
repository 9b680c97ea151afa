"""The layers run one way, along the data flow: a module never loads one above it.

errors, places, pem → certs → board, cloud, config_h → telemetry → widgets → steps → course, cli.
The virtual board (kit.sim) sits above what it imitates (the board, config.h) and below the
cloud it talks to as any board does; background processes have entry points of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parent.parent / "kit"
ABOVE = {
    "kit.errors": ["kit.certs", "kit.board", "kit.cloud", "kit.sim", "kit.cli"],
    "kit.places": ["kit.certs", "kit.board", "kit.cloud", "kit.sim", "kit.cli"],
    "kit.pem": ["kit.certs", "kit.board", "kit.cloud", "kit.sim", "kit.cli"],
    "kit.signatures": ["kit.certs", "kit.board", "kit.cloud", "kit.sim", "kit.cli"],
    "kit.config_values": ["kit.certs", "kit.board", "kit.cloud", "kit.sim", "kit.cli"],
    "kit.certs": ["kit.board", "kit.cloud", "kit.config_h", "kit.sim", "kit.telemetry"],
    "kit.trust": ["kit.certs", "kit.config_h", "kit.board", "kit.cloud", "kit.sim", "kit.cli"],
    "kit.bearssl_anchors": ["kit.config_h", "kit.board", "kit.cloud", "kit.sim", "kit.cli"],
    "kit.board_ports": ["kit.sim", "kit.cloud", "kit.certs", "kit.telemetry", "kit.cli"],
    "kit.board": ["kit.sim", "kit.cloud", "kit.telemetry", "kit.widgets", "kit.course", "kit.cli"],
    "kit.config_h": ["kit.board", "kit.cloud", "kit.sim", "kit.telemetry", "kit.cli"],
    "kit.environment": ["kit.certs", "kit.board", "kit.cloud", "kit.sim", "kit.steps", "kit.cli"],
    "kit.cloud": ["kit.cloud.local", "kit.cloud.aws", "kit.cloud.service", "kit.sim", "kit.cli"],
    # The registry asks the service whether it runs only when asked, never at import.
    "kit.cloud.local": [
        "kit.cloud.service",
        "kit.sim",
        "kit.telemetry",
        "kit.widgets",
        "kit.course",
        "kit.cli",
    ],
    "kit.cloud.local_broker": ["kit.cloud.local", "kit.cloud.service", "kit.sim", "kit.cli"],
    "kit.cloud.aws": ["kit.sim", "kit.telemetry", "kit.widgets", "kit.course", "kit.cli"],
    "kit.cloud.service": ["kit.sim", "kit.telemetry", "kit.widgets", "kit.course", "kit.cli"],
    "kit.sim.board": ["kit.cloud", "kit.telemetry", "kit.widgets", "kit.course", "kit.cli"],
    "kit.sim.process": ["kit.cloud", "kit.telemetry", "kit.widgets", "kit.course", "kit.cli"],
    "kit.sim.provider": ["kit.cloud", "kit.telemetry", "kit.widgets", "kit.course", "kit.cli"],
    "kit.telemetry": ["kit.sim", "kit.widgets", "kit.course", "kit.cli", "kit.classroom"],
    # The class server sits beside the notebooks' layers, on the cloud and telemetry.
    "kit.classroom.site": ["kit.sim", "kit.widgets", "kit.steps", "kit.course", "kit.cli"],
    "kit.widgets": ["kit.sim", "kit.steps", "kit.course", "kit.cli"],
    "kit.steps": ["kit.widgets", "kit.course", "kit.cli"],
    "kit.course": ["kit.cli"],
}


def loaded_by(module: str) -> list[str]:
    """The kit modules a fresh interpreter has loaded after importing `module`."""
    code = (
        f"import json, sys, {module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m == 'kit' or m.startswith('kit.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("module", ABOVE)
def test_a_layer_loads_nothing_above_it(module: str) -> None:
    loaded = loaded_by(module)
    above = [
        m for m in loaded for layer in ABOVE[module] if m == layer or m.startswith(layer + ".")
    ]
    assert not above, f"{module} loads {above}"


def test_no_background_process_runs_through_the_cli() -> None:
    starters = [
        path.relative_to(KIT).as_posix()
        for path in KIT.rglob("*.py")
        if path.name != "cli.py" and '"kit.cli"' in path.read_text(encoding="utf-8")
    ]
    assert not starters, f"these start processes through kit.cli: {starters}"


def test_sim_urls_open_with_only_kit_board_imported(tmp_path: Path) -> None:
    # kit.board loads the virtual board as a provider when a sim:// URL is opened.
    code = (
        "import sys, kit.board\n"
        "assert not any(m.startswith('kit.sim') for m in sys.modules)\n"
        "try:\n"
        "    kit.board.open_port('sim://nobody')\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"KIT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
    )
    assert done.stdout.startswith("VirtualBoardError The virtual board 'nobody' is not running")


def test_kit_variables_are_read_in_one_place() -> None:
    # kit.environment reads KIT_*; background passes an allow-list on to child processes and
    # demo builds its kernels' environment: neither reads a setting for itself.
    readers = [
        path.relative_to(KIT).as_posix()
        for path in KIT.rglob("*.py")
        if path.name not in ("environment.py", "background.py", "demo.py")
        and ("os.environ" in path.read_text(encoding="utf-8") or "getenv" in path.read_text())
    ]
    assert not readers, f"these read the environment themselves: {readers}"
