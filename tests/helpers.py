"""Test fixtures made at test time: chip-like CSRs, a throwaway CA, pasted-text variants.

Private keys are generated here for every run and never written to the repository.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from kit.pem import PemBlock
from kit.sim.eccx08_csr import chip_csr, chip_pem, der


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key, like one the ECCX08 makes in a slot."""
    return ec.generate_private_key(ec.SECP256R1())


def csr_pem(name: str = "0123C13DA283AFA5EE", key=None, **fields: str) -> str:
    """A CSR exactly as the ECCX08 library prints it (PrintableString subject, 76 columns)."""
    return chip_pem(chip_csr(key or new_key(), {"CN": name, **fields}))


@dataclass
class Ca:
    """A throwaway certificate authority that signs certificates like a cloud would."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(
        self, public_key, name: str, *, days: int = 365, start: dt.datetime | None = None
    ) -> str:
        """A certificate for `public_key` with CN `name` written as a PrintableString, as AWS
        copies it from a chip's CSR (even when `name` has characters that type forbids)."""
        start = start or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
        # cryptography refuses to encode '_' in a PrintableString, so build with a stand-in
        # name of the same length and put the real bytes back into the signed part.
        stand_in = "".join(c if c.isalnum() else "x" for c in name)
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, stand_in, _ASN1Type.PrintableString)]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .sign(self.key, hashes.SHA256())
        )
        tbs = cert.tbs_certificate_bytes.replace(
            b"\x13" + bytes([len(name)]) + stand_in.encode(),
            b"\x13" + bytes([len(name)]) + name.encode(),
        )
        signature = self.key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        algorithm = bytes.fromhex("300a06082a8648ce3d040302")
        out = der(0x30, tbs + algorithm + der(0x03, b"\x00" + signature))
        return PemBlock("certificate", out).pem


def make_ca(name: str = "Kit Test CA") -> Ca:
    """A self-signed P-256 CA."""
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Ca(key, cert)


def private_key_pem(key=None) -> str:
    """A private key in PEM, to check that pasting one is refused."""
    key = key or new_key()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def serial_monitor(text: str, start_seconds: int = 45296) -> str:
    """Text as the Arduino IDE serial monitor shows it with timestamps on (`HH:MM:SS.mmm -> `)."""
    lines = []
    for i, line in enumerate(text.splitlines()):
        t = start_seconds * 1000 + i * 7
        h, m, s, ms = t // 3600000 % 24, t // 60000 % 60, t // 1000 % 60, t % 1000
        lines.append(f"{h:02}:{m:02}:{s:02}.{ms:03} -> {line}")
    return "\r\n".join(lines) + "\r\n"


def wait_until(condition, timeout: float = 15.0, what: str = "") -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def registered_config(cloud, board_name: str, thing: str):
    """A virtual board's chip made a CSR for `thing` (over its serial port), `cloud` registered
    it, and config.h was rendered for it: the values the AWS firmware boots from."""
    from kit import board, config_h
    from kit.sim import board as vboard
    from kit.sim.csr_sketch import SketchSettings
    from kit.sim.eccx08 import ChipTiming

    with vboard.VirtualBoard(board_name, SketchSettings(), ChipTiming.instant()) as csr_board:
        capture = board.capture_csr(csr_board.info.url, name=thing, lock=True)
    registration = cloud.register(capture.csr)
    text = config_h.render(
        "Classroom",
        "virtual-wifi",
        registration.broker_host,
        registration.certificate_pem,
        port=registration.broker_port,
        local_ca=registration.ca_pem,
    ).text
    return config_h.parse(text)
