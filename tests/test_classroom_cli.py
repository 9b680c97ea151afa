"""`kit class …` end to end: init, the roster, the site served over HTTPS by uvicorn (its own
certificate, never the device CA), a registration through it, and teardown."""

from __future__ import annotations

import os
import re
import signal
import ssl
from pathlib import Path

import httpx
import pytest
from class_server import free_port, kit, new_class, serving
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
def test_a_class_from_init_to_teardown_over_https(tmp_path: Path) -> None:
    running = new_class(tmp_path / "home", ["Ada Lovelace"], tmp_path / "roster.csv")
    env = running.env
    card = running.handout.read_text()
    username, ada_password = running.cards["Ada Lovelace"]
    assert username == "ada.lovelace" and running.fingerprint in card
    assert running.instructor_password not in card
    assert oct(running.handout.stat().st_mode)[-3:] == "600"

    try:
        with serving(running) as served:  # as an instructor runs it: no --broker-host
            pem = ssl.get_server_certificate(("127.0.0.1", int(running.port)), timeout=5)
            # The site shows its own certificate: the handout's fingerprint, and no CA.
            certificate = x509.load_pem_x509_certificate(pem.encode())
            shown = ":".join(f"{b:02X}" for b in certificate.fingerprint(hashes.SHA256()))
            assert shown == running.fingerprint
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
            assert not constraints.value.ca
            device_ca = (tmp_path / "home" / "cloud" / "ca" / "ca.pem").read_text()
            assert pem.strip() != device_ca.strip()

            with httpx.Client(base_url=running.site, verify=False) as ada:
                form = ada.get("/login").text
                token = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)
                ada.post(
                    "/login",
                    data={"username": username, "password": ada_password, "login_csrf": token},
                )
                cookie = next(c for c in ada.cookies.jar if c.name == "__Host-kit_session")
                assert cookie.secure  # sent over HTTPS only
                page = ada.get("/register").text
                csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
                done = ada.post(
                    "/register", data={"csrf": csrf, "csr": csr_pem("ada_1"), "slot": "0"}
                )
                assert "Registered <b>ada_1</b>" in done.text
                # The broker port the class's cloud really uses goes into config.h.
                ready = config_h.parse(ada.get("/devices/ada_1/config.h").text)
                assert ready.port == int(env["KIT_BROKER_PORT"])

                # Ctrl+C ends the site even while a live page stays open.
                with ada.stream("GET", "/live/ada_1/events?after=0", timeout=None) as live:
                    assert live.status_code == 200
                    served.process.send_signal(signal.SIGINT)
                    served.process.wait(timeout=15)

        listed = kit(env, "class", "roster", "list").stdout
        assert re.search(r"ada\.lovelace\s+student\s+Ada Lovelace\s+ada_1", listed)
        assert kit(env, "class", "teardown").returncode == 1  # asks for --yes
        gone = kit(env, "class", "teardown", "--yes", "--accounts")
        assert (
            "Removed 1 device(s) and the virtual boards, and the students' accounts." in gone.stdout
        )
        things = kit(env, "things")
        assert things.returncode == 0 and "ada_1" not in things.stdout
        left = kit(env, "class", "roster", "list")
        assert left.returncode == 0 and "instructor" in left.stdout
        assert "ada.lovelace" not in left.stdout
    finally:
        with using_home(tmp_path / "home"):
            steps.stop_everything()
