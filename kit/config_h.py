"""Render and read back `sketches/AWS/config.h`, the AWS sketch's configuration.

The file holds the WiFi name and password, the broker, the key slot, the device name and the
device certificate. Every value is checked before it is written (a wrong value here costs a
student a compile-upload-wait cycle on the board), escaped so the compiled bytes equal the input,
and the file is written atomically and readable by its owner only: it holds a password.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kit import bearssl_anchors, cxx
from kit.certs import load_certificate, validate_device_name
from kit.config_values import (
    DEFAULT_PORT,
    check_led_pin,
    check_password,
    check_slot,
    check_ssid,
    normalise_broker,
)
from kit.errors import ConfigError, KitError
from kit.places import checkout, write_private
from kit.printable import printable
from kit.trust import amazon_roots, is_amazon_roots

MASK = "********"
# The checks live in kit.config_values; these names stay importable from here.
__all__ = [
    "DEFAULT_PORT",
    "check_led_pin",
    "check_password",
    "check_slot",
    "check_ssid",
    "normalise_broker",
]

# The names the sketch uses, in the order config.h declares them.
NAMES = (
    "WIFI_SSID",
    "WIFI_PASS",
    "BROKER_HOST",
    "BROKER_PORT",
    "KEY_SLOT",
    "DEVICE_NAME",
    "DEVICE_CERTIFICATE",
    "LED_PIN",
    "KIT_LOCAL_CA",
)

_TEMPLATE = """\
// config.h: settings for the AWS sketch (sketches/AWS/AWS.ino).
//
// {origin}
// This file holds your WiFi password: never commit it or share it.
// The private key is not here: it never leaves the board's ECCX08 crypto chip.

#pragma once

// WiFi network name (SSID), at most 32 bytes. The board's WiFi is 2.4 GHz only and cannot join
// WPA2-Enterprise networks such as eduroam.
const char WIFI_SSID[] = {ssid};

// WiFi password: 8 to 63 characters, or 64 hex digits; empty for an open network.
const char WIFI_PASS[] = {password};

// The MQTT broker's DNS name (the board's TLS checks names, not IP addresses), and its port.
const char BROKER_HOST[] = {broker};
const int BROKER_PORT = {port};

// The ECCX08 slot (0 to 4) that holds the private key the certificate was issued for.
const int KEY_SLOT = {slot};

// The certificate's common name; the sketch uses it as its MQTT client id and in its topics
// (things/<name>/...).
const char DEVICE_NAME[] = {name};

// The device certificate the cloud issued for the chip's key.
const char DEVICE_CERTIFICATE[] = {certificate};

// The pin the LED is on (a PWM pin; 5 in the workshop's wiring).
const int LED_PIN = {led_pin};

{trust_anchor}"""

_NO_LOCAL_CA = """\
// The broker is AWS IoT: its chain ends at Amazon Root CA 1 or Amazon Root CA 3 (which one depends
// on the cipher suite), and the sketch trusts both (amazon_trust_anchors.h): nothing to add here.
#define KIT_LOCAL_CA 0
"""
_LOCAL_CA = """\
// The local cloud's CA signs the broker's certificate. The board's TLS library does not know it,
// so it is given here, with the BearSSL trust anchor made from it (the subject's DER
// and the P-256 public key; local_trust_anchor.h in the sketch builds br_x509_trust_anchor).
#define KIT_LOCAL_CA 1
const char LOCAL_CA[] = {pem};
const unsigned char LOCAL_CA_DN[] = {{
{dn}
}};
const unsigned char LOCAL_CA_EC_Q[] = {{
{q}
}};
"""
DEFAULT_LED_PIN = 5


@dataclass(frozen=True)
class SketchConfig:
    """The values config.h holds, checked and normalised."""

    ssid: str
    password: str = field(repr=False)
    broker: str
    certificate: str  # canonical PEM
    port: int = DEFAULT_PORT
    slot: int = 0
    device_name: str = ""  # the certificate's common name
    led_pin: int = DEFAULT_LED_PIN
    local_ca: str = ""  # PEM of the CA behind the broker, when it is not AWS IoT

    @property
    def trusted_roots(self) -> str:
        """The CAs the sketch checks the broker against: the local CA, else Amazon's roots."""
        return self.local_ca or amazon_roots()


@dataclass(frozen=True)
class RenderedConfig:
    """A rendered config.h: its text, the values in it, and what was changed from the input."""

    text: str = field(repr=False)
    config: SketchConfig
    changes: tuple[str, ...] = ()

    @property
    def masked_text(self) -> str:
        """The text with the WiFi password replaced by stars, safe to show on a projector."""
        if not self.config.password:
            return self.text
        secret = cxx.string_literal(self.config.password)
        return self.text.replace(f"WIFI_PASS[] = {secret};", f'WIFI_PASS[] = "{MASK}";')

    def write(self, path: str | Path | None = None) -> Path:
        """Write config.h atomically, mode 0600 (default: sketches/AWS/config.h in the checkout)."""
        return write_private(Path(path) if path else default_path(), self.text)

    def summary(self) -> list[tuple[str, str]]:
        """What config.h says, in a few rows short enough for a projector."""
        config = self.config
        return [
            ("WiFi", f"{config.ssid}, password {'set (masked)' if config.password else 'empty'}"),
            ("Broker", f"{config.broker}:{config.port}"),
            ("Device", f"{config.device_name}, key slot {config.slot}"),
            (
                "Board trusts",
                "the local cloud's CA" if config.local_ca else "Amazon Root CA 1 and 3",
            ),
            ("Certificate", f"{len(config.certificate.splitlines())} lines of PEM"),
        ]

    def _repr_html_(self) -> str:
        # The summary first: the whole file is ~80 lines, too long for a projector.
        notes = "".join(f"<li>{html.escape(printable(c))}</li>" for c in self.changes)
        notes = f"<p>Changed from what was typed:</p><ul>{notes}</ul>" if notes else ""
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
            f"<td style='text-align:left'>{html.escape(printable(value))}</td></tr>"
            for label, value in self.summary()
        )
        whole = html.escape(self.masked_text)
        return (
            f"{notes}<table>{rows}</table><details><summary>The whole config.h (password "
            f"masked)</summary><pre>{whole}</pre></details>"
        )

    def __str__(self) -> str:
        return self.masked_text


def default_path() -> Path:
    """sketches/AWS/config.h in the checkout (git-ignored)."""
    return checkout() / "sketches" / "AWS" / "config.h"


def render(
    ssid: str,
    password: str,
    broker: str,
    certificate: str,
    *,
    port: int | None = None,
    slot: int = 0,
    led_pin: int = DEFAULT_LED_PIN,
    local_ca: str = "",
) -> RenderedConfig:
    """Check and normalise the values and render config.h; nothing is written.

    `local_ca` is the CA that signs a local broker's certificate (the board then trusts it);
    leave it empty for AWS IoT, whose roots the sketch carries (amazon_trust_anchors.h).
    """
    changes: list[str] = []
    check_ssid(ssid)
    check_password(password)
    host, port = normalise_broker(broker, port, changes)
    check_slot(slot)
    cert = _certificate(certificate, changes)
    name = load_certificate(cert).common_name
    check_led_pin(led_pin)
    ca = _local_ca(local_ca) if local_ca else ""
    config = SketchConfig(ssid, password, host, cert, port, slot, name, led_pin, ca)
    return RenderedConfig(to_text(config), config, tuple(changes))


class Registered(Protocol):
    """What config.h takes from a registration: a cloud's `Registration`, or the kit's record of
    one (`DeviceRecord`)."""

    @property
    def certificate_pem(self) -> str: ...
    @property
    def broker_host(self) -> str: ...
    @property
    def broker_port(self) -> int: ...
    @property
    def ca_pem(self) -> str: ...


def for_registration(
    registration: Registered,
    ssid: str,
    password: str,
    *,
    slot: int = 0,
    led_pin: int = DEFAULT_LED_PIN,
    certificate: str | None = None,
    broker: str | None = None,
    port: int | None = None,
    local_ca: str = "",
) -> RenderedConfig:
    """Render config.h for a registered device: its certificate, its broker and the trust anchor
    its cloud's CA calls for (`trust_anchor`); nothing is written.

    A value given here is used instead of the registration's; a broker given without a port gets
    the default port (or the one written after its name), not the registration's.
    """
    return render(
        ssid,
        password,
        broker or registration.broker_host,
        registration.certificate_pem if certificate is None else certificate,
        port=registration.broker_port if port is None and broker is None else port,
        slot=slot,
        led_pin=led_pin,
        local_ca=local_ca or trust_anchor(registration.ca_pem),
    )


def to_text(
    config: SketchConfig,
    origin: str = "Made by the course kit (`kit config-h` or notebook 03_configure_sketch).",
) -> str:
    """The text of config.h for already-checked values."""
    return _TEMPLATE.format(
        origin=origin,
        ssid=cxx.string_literal(config.ssid),
        password=cxx.string_literal(config.password),
        broker=cxx.string_literal(config.broker),
        port=config.port,
        slot=config.slot,
        name=cxx.string_literal(config.device_name),
        certificate=cxx.raw_string_literal(config.certificate),
        led_pin=config.led_pin,
        trust_anchor=_trust_anchor(config.local_ca) if config.local_ca else _NO_LOCAL_CA,
    )


def example_text() -> str:
    """The committed, secret-free template sketches/AWS/config.h.example."""
    placeholder = (
        "-----BEGIN CERTIFICATE-----\n(paste the certificate here)\n-----END CERTIFICATE-----\n"
    )
    config = SketchConfig("", "", "", placeholder, DEFAULT_PORT, 0, "")
    return to_text(
        config,
        origin=(
            "Template: copy it to config.h and fill it in, or let notebook 03 (or "
            "`kit config-h`) write it."
        ),
    )


def parse(text: str) -> SketchConfig:
    """Read a config.h back into checked values (the virtual board boots from it)."""
    found = cxx.declarations(text)
    missing = [name for name in NAMES if name not in found]
    if missing:
        raise ConfigError(
            f"config.h does not define {', '.join(missing)}. Render it again with "
            "`kit config-h` (or the notebook 03_configure_sketch)."
        )
    strings: dict[str, str] = {}
    for name in ("WIFI_SSID", "WIFI_PASS", "BROKER_HOST", "DEVICE_NAME", "DEVICE_CERTIFICATE"):
        value = found[name]
        if not isinstance(value, bytes):
            raise ConfigError(f"{name} in config.h should be a string in double quotes.")
        try:
            strings[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{name} in config.h is not valid UTF-8 text.") from None
    numbers: dict[str, int] = {}
    for name in ("BROKER_PORT", "KEY_SLOT", "LED_PIN"):
        value = found[name]
        if not isinstance(value, int):
            raise ConfigError(f"{name} in config.h should be a whole number.")
        numbers[name] = value
    rendered = render(
        strings["WIFI_SSID"],
        strings["WIFI_PASS"],
        strings["BROKER_HOST"],
        strings["DEVICE_CERTIFICATE"],
        port=numbers["BROKER_PORT"],
        slot=numbers["KEY_SLOT"],
        led_pin=numbers["LED_PIN"],
        local_ca=_string(found, "LOCAL_CA") if found.get("KIT_LOCAL_CA") == 1 else "",
    )
    config = rendered.config
    if rendered.changes:
        raise ConfigError(
            "config.h has values the board cannot use as they are: "
            + "; ".join(rendered.changes)
            + ". Render it again (notebook 03, or `kit config-h`)."
        )
    if strings["DEVICE_NAME"] != config.device_name:
        raise ConfigError(
            f"DEVICE_NAME in config.h is '{strings['DEVICE_NAME']}' but the certificate is for "
            f"'{config.device_name}'. The broker only accepts the certificate's name as client "
            "id: render config.h again (notebook 03, or `kit config-h`)."
        )
    return config


def trust_anchor(ca_pem: str) -> str:
    """The CA config.h must carry for a broker behind `ca_pem`: none for Amazon's roots (the
    sketch carries them), the CA itself for any other cloud."""
    return "" if is_amazon_roots(ca_pem) else ca_pem


def _certificate(text: str, changes: list[str]) -> str:
    """The device certificate as canonical PEM, with a device name the broker accepts."""
    cert = load_certificate(text)
    if text.strip() != cert.pem.strip():
        changes.append("tidied the certificate text (timestamps, spaces and line breaks)")
    if not cert.common_name:
        raise ConfigError(
            "The certificate has no common name, so the board would have no MQTT client id. "
            "Register the board's CSR and use the certificate that comes back."
        )
    try:
        validate_device_name(cert.common_name)
    except KitError as error:
        raise ConfigError(
            f"The certificate's common name cannot be used as a device name: {error} Was it "
            "made for another purpose? Register the board's CSR and use that certificate."
        ) from None
    return cert.pem


def _string(found: dict[str, bytes | int], name: str) -> str:
    value = found.get(name)
    if not isinstance(value, bytes):
        raise ConfigError(f"{name} in config.h should be a string. Render config.h again.")
    return value.decode("utf-8", errors="replace")


def _local_ca(text: str) -> str:
    """The local CA as canonical PEM; it must be a P-256 CA (what BearSSL's anchor holds here)."""
    ca = load_certificate(text)
    if not ca.is_ca:
        raise ConfigError(
            "The local CA given for config.h is not a CA certificate. Use the ca.pem the "
            "registration step wrote (the CA that signs the broker's certificate)."
        )
    if ca.key_description != "EC P-256 (prime256v1)":
        raise ConfigError(f"The local CA has a {ca.key_description} key; the kit expects P-256.")
    return ca.pem


def _trust_anchor(pem: str) -> str:
    """The config.h lines for a local CA: its PEM, its subject DER and its public point."""
    anchor = bearssl_anchors.from_pem(pem)
    return _LOCAL_CA.format(
        pem=cxx.raw_string_literal(pem),
        dn=bearssl_anchors.hex_rows(anchor.dn),
        q=bearssl_anchors.hex_rows(anchor.ec_q),
    )
