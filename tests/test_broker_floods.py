"""Silent sockets are closed and leave no memory behind: bench/broker_floods.py, run small."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_three_floods_of_silent_sockets_are_closed_and_memory_stays_flat() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "broker_floods.py"),
            "--connections",
            "300",
            "--floods",
            "3",
            "--connect-timeout",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    start, first, second, third = json.loads(done.stdout)
    for flood in (first, second, third):
        assert flood["closed"] == flood["sockets"] == 300
        assert flood["seconds"] < 4  # 1 s allowed here (10 s by default), plus the sweep
    # The first flood sets the high-water mark; the next two must not raise it.
    assert third["rss_mb"] - first["rss_mb"] < 15, (start, first, second, third)
