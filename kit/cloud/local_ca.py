"""The local cloud's certificate authority: it signs device CSRs the way AWS IoT does, and only
the ones AWS IoT signs (kit.certs.check_signable).

The CA key is an EC P-256 key in KIT_HOME/cloud/ca/ (0600). Device certificates copy the CSR's
subject; `cryptography` cannot write the non-standard PrintableString names chips make, so names
are re-encoded as UTF8String (same characters; policies compare the text).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import socket
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kit.certs import Csr, check_signable
from kit.errors import DamagedFileError
from kit.places import damaged, read_state, set_aside, write_private

OBSERVER_CN = "kit-observer"
# AWS IoT device certificates are valid until the end of 2049; so are ours.
DEVICE_NOT_AFTER = dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
_OIDS = {
    "CN": NameOID.COMMON_NAME,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
}


def certificate_id(der: bytes) -> str:
    """The certificate id, as AWS IoT makes it: the SHA-256 of the DER, in hex."""
    return hashlib.sha256(der).hexdigest()


class LocalCA:
    """A persistent CA in `folder`, created on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        key_file, cert_file = self.folder / "ca.key", self.folder / "ca.pem"
        if key_file.exists() or cert_file.exists() or key_file.is_symlink():
            # Never make a new CA over part of an old one: every device it signed depends on it.
            self.key, self.cert = _load_ca(key_file, cert_file)
            return
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "IoT course kit"),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"Kit local CA ({socket.gethostname()})"[:64]
                ),
            ]
        )
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (
            _builder(
                name,
                name,
                self.key.public_key(),
                now - dt.timedelta(hours=1),
                now + dt.timedelta(days=3650 * 3),
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        write_private(key_file, _key_pem(self.key))
        write_private(cert_file, self.pem)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def sign_csr(self, csr: Csr) -> str:
        """A device certificate for the CSR's key and subject (PEM); CertificateError, saying
        what to use, for a key or signature AWS IoT would not sign (RSA under 2048 bits, a
        curve other than P-256/P-384/P-521, SHA-1): what works here must work on AWS."""
        check_signable(csr)
        subject = x509.Name(
            [
                x509.NameAttribute(_OIDS[a.short_name], a.value)
                for a in csr.subject
                if a.short_name in _OIDS
            ]
        )
        public_key = cast(CertificatePublicKeyTypes, csr.public_key)  # it signed the CSR: not DH
        cert = self._issue(subject, public_key, 5 * 60, DEVICE_NOT_AFTER, CLIENT)
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def server_identity(self, names: list[str]) -> tuple[Path, Path]:
        """The broker's certificate and key files for these DNS names and IP addresses."""
        cert_file, key_file = self.folder / "server.pem", self.folder / "server.key"
        wanted = sorted(set(names))
        current = _derived_certificate(cert_file, key_file)
        if current is not None:
            san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = sorted(str(v) for v in san.get_values_for_type(x509.DNSName)) + sorted(
                str(v) for v in san.get_values_for_type(x509.IPAddress)
            )
            if sorted(have) == wanted and current.not_valid_after_utc > dt.datetime.now(
                dt.timezone.utc
            ) + dt.timedelta(days=30):
                return cert_file, key_file
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for name in wanted:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, wanted[0] if wanted else "localhost")]
        )
        not_after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=825)
        san = x509.SubjectAlternativeName(alt)
        cert = self._issue(subject, key.public_key(), 3600, not_after, SERVER, san)
        write_private(key_file, _key_pem(key))
        # The chain (server, then CA) so clients that only trust the CA can build it.
        write_private(cert_file, cert.public_bytes(serialization.Encoding.PEM).decode() + self.pem)
        return cert_file, key_file

    def observer_identity(self) -> tuple[Path, Path]:
        """The observer's certificate and key files (for notebooks and dashboards)."""
        cert_file, key_file = self.folder / "observer.pem", self.folder / "observer.key"
        if _derived_certificate(cert_file, key_file) is not None:
            return cert_file, key_file
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, OBSERVER_CN)])
        cert = self._issue(subject, key.public_key(), 3600, DEVICE_NOT_AFTER, CLIENT)
        write_private(key_file, _key_pem(key))
        write_private(cert_file, cert.public_bytes(serialization.Encoding.PEM).decode())
        return cert_file, key_file

    def _issue(
        self,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        backdate: float,
        not_after: dt.datetime,
        usage: x509.ObjectIdentifier,
        names: x509.SubjectAlternativeName | None = None,
    ) -> x509.Certificate:
        """An end-entity certificate signed by this CA, valid from `backdate` seconds ago
        (clocks differ) for the one extended key usage given."""
        now = dt.datetime.now(dt.timezone.utc)
        builder = _builder(
            subject, self.cert.subject, public_key, now - dt.timedelta(seconds=backdate), not_after
        )
        if names is not None:
            builder = builder.add_extension(names, critical=False)
        return (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())


CLIENT, SERVER = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


_CA_FIX = (
    "and start again: a new CA is made, so every device must be registered again (notebook 02)"
)


def _load_ca(
    key_file: Path, cert_file: Path
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA's key and certificate, or DamagedFileError for the CA folder."""
    folder = key_file.parent
    key_text = read_state(key_file, _CA_FIX, folder)
    cert_text = read_state(cert_file, _CA_FIX, folder)
    if key_text is None or cert_text is None:
        missing = key_file if key_text is None else cert_file
        raise damaged(missing, "it is missing, and its pair is there", _CA_FIX, folder)
    try:
        key = serialization.load_pem_private_key(key_text.encode(), None)
        cert = x509.load_pem_x509_certificate(cert_text.encode())
    except ValueError:
        raise damaged(folder, "its key or certificate cannot be read", _CA_FIX, folder) from None
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise damaged(folder, "ca.key does not belong to ca.pem", _CA_FIX, folder)
    return cast(ec.EllipticCurvePrivateKey, key), cert  # the kit makes only P-256 CA keys


def _derived_certificate(cert_file: Path, key_file: Path) -> x509.Certificate | None:
    """A certificate the CA can make again (broker, observer), if both its files are whole;
    damaged ones are set aside so a fresh pair is made."""
    if not (cert_file.exists() or key_file.exists()):
        return None
    try:
        cert_text = read_state(cert_file, "") or ""
        key_text = read_state(key_file, "") or ""
        cert = x509.load_pem_x509_certificate(cert_text.encode())
        serialization.load_pem_private_key(key_text.encode(), None)
    except (DamagedFileError, ValueError):
        for path in (cert_file, key_file):
            if path.exists() or path.is_symlink():
                set_aside(path)
        return None
    return cert
