"""The data directory: created on first use with a format version; foreign or newer ones refused."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from kit import errors, places


def test_created_with_a_format_version(kit_home: Path) -> None:
    assert not kit_home.exists()
    assert places.kit_home() == kit_home
    marker = json.loads((kit_home / places.MARKER).read_text())
    assert marker["format"] == places.FORMAT == 1
    assert stat.S_IMODE((kit_home / places.MARKER).stat().st_mode) == 0o600
    assert places.kit_home() == kit_home  # opening it again is fine


def test_an_empty_existing_folder_is_adopted(kit_home: Path) -> None:
    kit_home.mkdir(parents=True)
    places.kit_home()
    assert (kit_home / places.MARKER).exists()


def test_a_newer_format_is_refused(kit_home: Path) -> None:
    kit_home.mkdir(parents=True)
    (kit_home / places.MARKER).write_text(json.dumps({"format": places.FORMAT + 1}))
    with pytest.raises(errors.DataDirError, match="written by a newer kit"):
        places.kit_home()


def test_a_foreign_folder_is_refused(kit_home: Path) -> None:
    kit_home.mkdir(parents=True)
    (kit_home / "thesis.docx").write_text("precious")
    with pytest.raises(errors.DataDirError, match="not a kit data folder"):
        places.kit_home()
    assert (kit_home / "thesis.docx").read_text() == "precious"


def test_a_damaged_marker_is_reported(kit_home: Path) -> None:
    kit_home.mkdir(parents=True)
    (kit_home / places.MARKER).write_text("{not json")
    with pytest.raises(errors.DataDirError, match="is damaged"):
        places.kit_home()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG applies on Linux")
def test_default_is_the_platform_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KIT_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert places.kit_home(create=False) == tmp_path / "kit"
