"""The class site's own HTTPS certificate: self-signed, for the class host names only.

It is never the device CA. A browser is asked once to accept this certificate (the handout shows
its fingerprint to compare); it is not a CA, so accepting it lets the browser trust this site and
nothing else, least of all the boards' certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kit.certs import load_certificate
from kit.places import write_private

VALID_DAYS = 397  # browsers refuse server certificates valid for longer


@dataclass(frozen=True)
class WebCertificate:
    """Where the certificate and its key are, and its SHA-256 fingerprint as browsers show it."""

    certificate: Path
    key: Path
    fingerprint: str


def fingerprint_of(pem: bytes) -> str:
    """SHA-256 of the certificate's DER, colon-separated hex (as a browser shows it)."""
    return load_certificate(pem).sha256_fingerprint


def ensure(folder: Path, names: list[str]) -> WebCertificate:
    """The class's web certificate in `folder`, made on first use for `names`, and made
    again when it is missing or runs out within a day."""
    certificate, key = folder / "web-certificate.pem", folder / "web-key.pem"
    if not certificate.exists() or not key.exists() or _expiring(certificate):
        _make(certificate, key, names)
    return WebCertificate(certificate, key, fingerprint_of(certificate.read_bytes()))


def _expiring(certificate: Path) -> bool:
    loaded = x509.load_pem_x509_certificate(certificate.read_bytes())
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    return loaded.not_valid_after_utc < soon


def _make(certificate: Path, key_path: Path, names: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.timezone.utc)
    built = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(key_path, key_pem.decode())
    write_private(certificate, built.public_bytes(serialization.Encoding.PEM).decode())
