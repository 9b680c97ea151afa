"""The `kit` command, run as a student runs it: a real process, real files, real stdin."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import csr_pem, private_key_pem, serial_monitor
from test_pem import PASTES

from kit import __version__, config_h
from kit.cli import main

KIT = [sys.executable, "-m", "kit.cli"]


def kit(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "KIT_WIFI_PASSWORD"}
    full_env.update(env or {})
    return subprocess.run(
        [*KIT, *args], input=stdin, capture_output=True, text=True, env=full_env, timeout=60
    )


def test_help_lists_the_commands() -> None:
    done = kit("--help")
    assert done.returncode == 0
    for name in ("inspect", "config-h", "lab"):
        assert name in done.stdout


def test_version() -> None:
    done = kit("--version")
    assert done.stdout.strip() == f"kit {__version__}"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "kit"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert done.stdout.strip() == f"kit {__version__}"


def test_inspect_a_pasted_csr_from_stdin() -> None:
    done = kit(
        "inspect", "-", stdin=serial_monitor("Here's your CSR, enjoy!\n\n" + csr_pem("device_01"))
    )
    assert done.returncode == 0, done.stderr
    assert "Certificate signing request (CSR)" in done.stdout
    assert "CN=device_01" in done.stdout
    assert "valid" in done.stdout


def test_inspect_a_certificate_file(tmp_path: Path, ca, key) -> None:
    path = tmp_path / "cert.txt"
    path.write_text(ca.issue(key.public_key(), "device_01").replace("\n", "\r\n"))
    done = kit("inspect", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Certificate\n")
    assert "Issuer:" in done.stdout and "CN=Kit Test CA" in done.stdout


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("hello", "No CSR or certificate found"),
        ("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n", "no matching -----END"),
        (private_key_pem(), "Never paste or share a private key"),
        (csr_pem("a") + csr_pem("b"), "2 PEM blocks"),
        ("-----BEGIN CERTIFICATE-----\nMIIB=A\n-----END CERTIFICATE-----\n", "not valid base64"),
    ],
)
def test_inspect_refusals_are_one_line_and_exit_1(text: str, words: str) -> None:
    done = kit("inspect", "-", stdin=text)
    assert done.returncode == 1
    assert done.stdout == ""
    assert words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_inspect_missing_file() -> None:
    done = kit("inspect", "no-such-file.pem")
    assert done.returncode == 1
    assert "There is no file no-such-file.pem" in done.stderr


@pytest.fixture
def cert(tmp_path: Path, ca, key) -> Path:
    """A device certificate for device_01 in a file, as the registration step leaves it."""
    path = tmp_path / "certificate.pem"
    path.write_text(ca.issue(key.public_key(), "device_01"))
    return path


def config_h_cli(cert: Path, out: Path, broker: str = "b.local", *extra: str, **kw):
    """`kit config-h` for the certificate file, written to `out`."""
    return kit(
        "config-h",
        "--ssid",
        "Class",
        "--broker",
        broker,
        "--cert",
        str(cert),
        "--out",
        str(out),
        *extra,
        **kw,
    )


def test_config_h_reads_the_password_from_stdin(tmp_path: Path, cert: Path) -> None:
    out = tmp_path / "config.h"
    done = config_h_cli(
        cert,
        out,
        "https://Broker.Example.com:8883/",
        "--slot",
        "3",
        "--password-stdin",
        stdin="correct horse\n",
    )
    assert done.returncode == 0, done.stderr
    assert "correct horse" not in done.stdout + done.stderr
    assert "removed 'https://'" in done.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = config_h.parse(out.read_text())
    assert (config.password, config.broker, config.slot, config.device_name) == (
        "correct horse",
        "broker.example.com",
        3,
        "device_01",
    )


def test_config_h_reads_the_password_from_the_environment(tmp_path: Path, cert: Path) -> None:
    out = tmp_path / "config.h"
    done = config_h_cli(cert, out, env={"KIT_WIFI_PASSWORD": "from-the-env"})
    assert done.returncode == 0, done.stderr
    assert config_h.parse(out.read_text()).password == "from-the-env"


def test_config_h_without_a_password_source_says_how(tmp_path: Path, cert: Path) -> None:
    done = config_h_cli(cert, tmp_path / "config.h")
    assert done.returncode == 1
    assert "--password-stdin" in done.stderr and "KIT_WIFI_PASSWORD" in done.stderr
    assert not (tmp_path / "config.h").exists()


def test_config_h_has_no_password_argument() -> None:
    done = kit("config-h", "--help")
    assert "--password-stdin" in done.stdout
    assert "--password " not in done.stdout and "--password=" not in done.stdout


def test_config_h_bad_value_writes_nothing(tmp_path: Path, cert: Path) -> None:
    out = tmp_path / "config.h"
    done = config_h_cli(cert, out, "192.168.0.10", "--password-stdin", stdin="password1\n")
    assert done.returncode == 1
    assert "is an IP address" in done.stderr
    assert list(tmp_path.iterdir()) == [cert]


@pytest.mark.parametrize("form", PASTES)
def test_inspect_handles_every_accepted_paste(form: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "pasted.txt"
    path.write_text(PASTES[form](csr_pem("device_01")), newline="")
    assert main(["inspect", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "CN=device_01" in shown and "Signature:" in shown


def test_a_console_without_the_characters_gets_replacements_not_a_crash(tmp_path) -> None:
    # Windows writes a piped `kit`'s output in cp1252: a name with "→" must not crash it.
    done = subprocess.run(
        [sys.executable, "-m", "kit.cli", "inspect", str(tmp_path / "a→b.pem")],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "cp1252", "KIT_HOME": str(tmp_path)},
    )
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr
    assert b"There is no file" in done.stderr and b"a?b.pem" in done.stderr
