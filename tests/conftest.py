"""Shared fixtures: every test gets its own empty KIT_HOME."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import Ca, make_ca, new_key

ROOT = Path(__file__).resolve().parent.parent
# AWS IoT Core played by moto: the fixtures moto_server, endpoint and real_keys.
pytest_plugins = ["aws_moto"]


@pytest.fixture(scope="session", autouse=True)
def run_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This run's data directory, for what lives longer than one test (a module's local
    cloud): never the user's own, never the last run's."""
    home = tmp_path_factory.mktemp("run-home") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIT_HOME", str(home))
        yield home


@pytest.fixture(autouse=True)
def kit_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data directory per test: no test sees a student's devices or another test's."""
    home = tmp_path_factory.mktemp("kit-home") / "home"
    monkeypatch.setenv("KIT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def ca() -> Ca:
    """A throwaway CA for issuing device certificates."""
    return make_ca()


@pytest.fixture
def key():
    """A fresh P-256 key, like one the chip makes in a slot."""
    return new_key()
