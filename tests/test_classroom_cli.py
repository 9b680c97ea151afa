"""`kit class …` end to end: init, the roster, the site served over HTTPS by uvicorn (its own
certificate, never the device CA), a registration through it, and teardown."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from class_server import free_port, kit
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from helpers import csr_pem

from kit import config_h, steps
from kit.places import using_home


@pytest.fixture
def instructor(tmp_path: Path):
    env = {
        **os.environ,
        "KIT_HOME": str(tmp_path / "home"),
        "KIT_BROKER_PORT": free_port(),
        "KIT_BROKER_WS_PORT": free_port(),
    }
    try:
        yield env
    finally:
        with using_home(tmp_path / "home"):
            steps.stop_everything()


def test_plain_http_is_refused_beyond_this_computer(instructor) -> None:
    assert kit(instructor, "class", "init", "--host", "class.local").returncode == 0
    refused = kit(instructor, "class", "serve", "--http", "--listen", "0.0.0.0")
    assert refused.returncode == 1 and "--http is allowed only with --listen 127.0.0.1" in (
        refused.stderr
    )
    # A client's X-Forwarded-For is believed only from a proxy on this computer.
    forged = kit(instructor, "class", "serve", "--proxy-headers")
    assert forged.returncode == 1 and "--proxy-headers is only for" in forged.stderr


@pytest.mark.timeout(120)
def test_a_class_from_init_to_teardown_over_https(instructor, tmp_path: Path) -> None:
    made = kit(instructor, "class", "init", "--host", "localhost")
    assert made.returncode == 0, made.stderr
    password = re.search(r"password (\S+) \(shown only now\)", made.stdout).group(1)
    fingerprint = re.search(r"\(SHA-256\): (\S+)", made.stdout).group(1)
    roster = tmp_path / "roster.csv"
    roster.write_text("name\nAda Lovelace\n", encoding="utf-8")
    added = kit(instructor, "class", "roster", "add", str(roster))
    handout = Path(re.search(r"handout: (\S+)", added.stdout).group(1))
    card = handout.read_text()
    ada_password = re.search(r"Password <code>([^<]+)</code>", card).group(1)
    assert fingerprint in card and "ada.lovelace" in card and password not in card
    assert oct(handout.stat().st_mode)[-3:] == "600"

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kit.cli", "class", "serve", "--port", port],
        env=instructor,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                pem = ssl.get_server_certificate(("127.0.0.1", int(port)), timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    "the site never answered"
                )
                time.sleep(0.3)
        # The site shows its own certificate: the handout's fingerprint, and no CA.
        certificate = x509.load_pem_x509_certificate(pem.encode())
        shown = ":".join(f"{b:02X}" for b in certificate.fingerprint(hashes.SHA256()))
        assert shown == fingerprint
        assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        device_ca = (tmp_path / "home" / "cloud" / "ca" / "ca.pem").read_text()
        assert pem.strip() != device_ca.strip()

        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=False) as ada:
            form = ada.get("/login").text
            token = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)
            ada.post(
                "/login",
                data={"username": "ada.lovelace", "password": ada_password, "login_csrf": token},
            )
            cookie = next(c for c in ada.cookies.jar if c.name == "__Host-kit_session")
            assert cookie.secure  # sent over HTTPS only
            csrf = re.search(r'name="csrf" value="([^"]+)"', ada.get("/register").text).group(1)
            done = ada.post("/register", data={"csrf": csrf, "csr": csr_pem("ada_1"), "slot": "0"})
            assert "Registered <b>ada_1</b>" in done.text
            # The broker port the class's cloud really uses goes into config.h.
            ready = config_h.parse(ada.get("/devices/ada_1/config.h").text)
            assert ready.port == int(instructor["KIT_BROKER_PORT"])
    finally:
        server.terminate()
        server.wait(timeout=30)

    listed = kit(instructor, "class", "roster", "list").stdout
    assert re.search(r"ada\.lovelace\s+student\s+Ada Lovelace\s+ada_1", listed)
    assert kit(instructor, "class", "teardown").returncode == 1  # asks for --yes
    gone = kit(instructor, "class", "teardown", "--yes", "--accounts")
    assert "Removed 1 device(s) and the students' accounts." in gone.stdout
    things = kit(instructor, "things")
    assert things.returncode == 0 and "ada_1" not in things.stdout
    left = kit(instructor, "class", "roster", "list")
    assert left.returncode == 0 and "instructor" in left.stdout
    assert "ada.lovelace" not in left.stdout
