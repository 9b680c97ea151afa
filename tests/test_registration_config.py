"""One registration → config.h (kit.config_h.for_registration): the student's notebook, the class
site's download and a provisioned virtual board write the same file for the same registration,
whichever cloud signed it, and only config_h decides whether the board needs the cloud's CA."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from helpers import csr_pem, new_key

from kit import config_h, devices, steps
from kit.classroom import provision, site
from kit.classroom.ownership import Outcome
from kit.classroom.store import Account
from kit.cloud import Registration
from kit.trust import amazon_roots

STUDENT = Account("ann.lee", "Ann Lee", "student")
THING = provision.device_name(STUDENT.username)
BROKERS = {
    "aws": ("a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com", 8883),
    "local": ("kit-laptop.local", 8884),
}


def registration_on(cloud: str, ca) -> Registration:
    """A registration of THING as the cloud gives it back (its CA: Amazon's roots or the
    local cloud's own)."""
    host, port = BROKERS[cloud]
    local = ca.cert.public_bytes(serialization.Encoding.PEM).decode()
    return Registration(
        THING,
        ca.issue(new_key().public_key(), THING),
        "c0ffee" * 10,
        host,
        port,
        amazon_roots() if cloud == "aws" else local,
        cloud,
    )


class OneRegistration:
    """A Registrar that gives back the registration it was made with."""

    def __init__(self, registration: Registration) -> None:
        self.registration = registration

    def register(self, username: str, csr, slot: int, *, class_board: bool = False) -> Outcome:
        return Outcome("", self.registration)


def notebook(registration: Registration, ssid: str, password: str) -> str:
    """What notebook 03 (steps.configure, from the kit's record of the device) writes."""
    record = devices.DeviceRecord(
        registration.thing,
        registration.cloud,
        registration.broker_host,
        registration.broker_port,
        registration.certificate_id,
    )
    devices.save(record, csr_pem(THING), registration.certificate_pem, registration.ca_pem)
    return steps.configure(ssid, password, record=devices.load(THING)).text


@pytest.mark.parametrize("cloud", ["aws", "local"])
def test_the_three_writers_agree_on_each_cloud(tmp_path: Path, ca, cloud: str) -> None:
    registration = registration_on(cloud, ca)
    from_site = site._ready(registration, 0).config_h  # the download of config.h
    assert from_site == notebook(registration, site.WIFI_NAME, site.WIFI_PASSWORD)
    folder = tmp_path / "board"
    provision._board(OneRegistration(registration), folder, STUDENT)  # one board
    from_provision = (folder / "config.h").read_text(encoding="utf-8")
    assert from_provision == notebook(registration, *provision.WIFI)
    config = config_h.parse(from_provision)
    assert (config.device_name, config.broker, config.port) == (THING, *BROKERS[cloud])
    if cloud == "aws":  # the sketch carries Amazon's roots: config.h adds no CA
        assert "#define KIT_LOCAL_CA 0" in from_site and config.local_ca == ""
    else:  # the board cannot know the local cloud's CA: config.h carries it
        assert "#define KIT_LOCAL_CA 1" in from_site and config.local_ca == registration.ca_pem


def test_a_slot_and_a_pin_reach_config_h(ca) -> None:
    rendered = config_h.for_registration(
        registration_on("local", ca), "w", "password1", slot=3, led_pin=6
    )
    assert (rendered.config.slot, rendered.config.led_pin) == (3, 6)


# A module that picks the trust anchor itself: comparing the cloud's name, or asking whether a
# CA is Amazon's, on a line that deals with a CA.
DECIDING = re.compile(
    r"(\bcloud\s*[!=]=|is_amazon_roots)(?=.*(ca_pem|local_ca|trust))"
    r"|(ca_pem|local_ca|trust).*(\bcloud\s*[!=]=|is_amazon_roots)"
)


def test_only_config_h_decides_the_trust_anchor() -> None:
    package = Path(config_h.__file__).parent
    deciding = [
        f"{path.relative_to(package.parent)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name not in ("config_h.py", "trust.py") or path.parent != package
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if DECIDING.search(line) or "is_amazon_roots(" in line
    ]
    assert deciding == []


def test_the_check_finds_the_old_rule() -> None:
    assert DECIDING.search('    local_ca = registration.ca_pem if registration.cloud == "local"')
    assert not DECIDING.search('    others = [r.thing for r in records if r.cloud == "aws"]')
