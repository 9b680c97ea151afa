"""kit.arduino against a stand-in arduino-cli on PATH that answers and fails like the real one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kit import arduino
from kit.places import checkout

FAKE = Path(__file__).parent / "fake_bin"


@pytest.fixture
def fake_cli(monkeypatch, tmp_path):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{FAKE}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("FAKE_ARDUINO_LOG", str(log))

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    return calls


@pytest.fixture
def sketch(tmp_path) -> Path:
    folder = tmp_path / "AWS"
    shutil.copytree(checkout() / "sketches" / "AWS", folder)
    (folder / "config.h").write_text(arduino_config())
    return folder


def arduino_config() -> str:
    return (checkout() / "sketches" / "AWS" / "config.h.example").read_text()


def test_upload_installs_compiles_and_uploads(fake_cli, sketch) -> None:
    said: list[str] = []
    assert arduino.upload(progress=said.append, folder=sketch) == "/dev/ttyACM0"
    calls = fake_cli()
    assert calls[:3] == [
        "core update-index",
        "core install arduino:samd",
        "lib install ArduinoECCX08",
    ]
    assert "lib install Adafruit SHT31 Library" in calls
    assert calls[-2:] == [
        f"compile --fqbn arduino:samd:mkrwifi1010 {sketch}",
        f"upload --fqbn arduino:samd:mkrwifi1010 --port /dev/ttyACM0 {sketch}",
    ]
    assert said[-1] == "Uploaded." and any("Compiling" in line for line in said)


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("offline", "could not download (no internet connection?)"),
        ("no-board", "No MKR WiFi 1010 or Nano 33 IoT found"),
        ("compile-error", "did not compile:\n"),
        ("busy", "close the Arduino IDE's Serial Monitor"),
    ],
)
def test_failures_are_explained(fake_cli, sketch, monkeypatch, mode, words) -> None:
    monkeypatch.setenv("FAKE_ARDUINO_MODE", mode)
    with pytest.raises(arduino.ArduinoError) as caught:
        arduino.upload(progress=lambda line: None, folder=sketch)
    assert words in str(caught.value)
    if mode == "compile-error":
        assert "'KEY_SLOTS' was not declared" in str(caught.value)


def test_missing_config_h_is_named(fake_cli, tmp_path) -> None:
    folder = tmp_path / "AWS"
    folder.mkdir()
    with pytest.raises(arduino.ArduinoError, match=r"config\.h is missing"):
        arduino.upload(folder=folder)


def test_without_arduino_cli_says_how(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not arduino.available()
    with pytest.raises(arduino.ArduinoError, match="conda-forge"):
        arduino.run("board", "list")
    assert "Arduino IDE" in arduino.instructions()
