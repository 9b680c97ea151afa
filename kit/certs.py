"""CSRs and certificates as people really paste them: clean, parse, check, describe.

`cryptography` refuses the CSRs real ECCX08 chips make (every subject field is a PrintableString,
even `device_01`, whose `_` that type does not allow), while OpenSSL and AWS IoT accept them. So
names and structure are read with asn1crypto, which is lenient there, and `cryptography` does the
key and signature maths on the exact bytes.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar, Literal

from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from kit.errors import (
    CertificateError,
    NotPemError,
    SignatureError,
    WrongPemKindError,
)
from kit.names import PRINTABLE_STRING, DeviceName, validate_device_name
from kit.pem import Kind, PemBlock, clean_pem, der_kind, read_block
from kit.printable import printable
from kit.signatures import (
    algorithm_name,
    canonical_key,
    digest_problem,
    key_problem,
    verify_certificate,
    verify_signature,
)

__all__ = [
    "Certificate",
    "Csr",
    "DeviceName",
    "NameAttribute",
    "check_signable",
    "clean_pem",
    "der_kind",
    "load_any",
    "load_certificate",
    "load_csr",
    "matches",
    "signing_problem",
    "validate_device_name",
]

_SHORT_NAMES = {
    "common_name": "CN",
    "country_name": "C",
    "state_or_province_name": "ST",
    "locality_name": "L",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "email_address": "emailAddress",
    "serial_number": "serialNumber",
    "domain_component": "DC",
    "street_address": "street",
}


@dataclass(frozen=True)
class NameAttribute:
    """One field of a subject or issuer name, with the ASN.1 string type it was written as."""

    short_name: str  # CN, O, C, ... or the dotted OID for rare types
    oid: str
    value: str
    string_type: str  # PrintableString, UTF8String, ...

    @property
    def nonstandard(self) -> str:
        """Characters that the field's string type does not allow (empty when it is standard)."""
        if self.string_type != "PrintableString":
            return ""
        return "".join(sorted(set(self.value) - PRINTABLE_STRING))


@dataclass(frozen=True, repr=False)
class _Signed:
    """What CSRs and certificates share: name parts, key, signature, encodings."""

    subject: tuple[NameAttribute, ...]
    public_key_der: bytes  # SubjectPublicKeyInfo
    signature_algorithm: str  # e.g. "ECDSA with SHA-256"
    der: bytes = field(repr=False)

    @property
    def common_name(self) -> str:
        """The subject's CN (the device name), or "" if there is none."""
        return next((a.value for a in self.subject if a.short_name == "CN"), "")

    @property
    def subject_text(self) -> str:
        """The subject as RFC 4514 text, as `openssl ... -nameopt RFC2253` prints it."""
        return name_text(self.subject)

    @property
    def public_key(self) -> PublicKeyTypes:
        """The public key as a `cryptography` object."""
        return serialization.load_der_public_key(self.public_key_der)

    @property
    def key_description(self) -> str:
        """Key type and size or curve, e.g. "EC P-256 (prime256v1)"."""
        return describe_key(self.public_key)

    @property
    def sha256_fingerprint(self) -> str:
        """SHA-256 of the DER, as colon-separated hex, as `openssl -fingerprint -sha256` prints."""
        return ":".join(f"{b:02X}" for b in hashlib.sha256(self.der).digest())

    @property
    def nonstandard_fields(self) -> tuple[NameAttribute, ...]:
        """Subject fields written as a type that does not allow their characters."""
        return tuple(a for a in self.subject if a.nonstandard)

    def _name_notes(self) -> list[tuple[str, str]]:
        return [
            (
                "Note",
                f"{a.short_name} is written as a PrintableString but holds "
                f"{', '.join(repr(c) for c in a.nonstandard)}, which that type does not allow. "
                "ECCX08 chips write names this way; OpenSSL and AWS IoT accept it.",
            )
            for a in self.nonstandard_fields
        ]

    def _rows(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    _title: ClassVar[str] = ""

    def describe(self) -> str:
        """The essentials of `openssl req -text` / `openssl x509 -text`, as plain text."""
        rows = self._shown_rows()
        width = max(len(label) for label, _ in rows) + 2
        lines = [self._title] + [f"  {label + ':':<{width}}{value}" for label, value in rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The same description as an HTML table, for notebooks."""
        cells = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
            # A fingerprint has no spaces: let it break anywhere so the table fits a projector.
            f"<td style='text-align:left;font-family:monospace;overflow-wrap:anywhere'>"
            f"{html.escape(value)}</td></tr>"
            for label, value in self._shown_rows()
        )
        return f"<b>{html.escape(self._title)}</b><table>{cells}</table>"

    def _shown_rows(self) -> list[tuple[str, str]]:
        """The rows with names made printable: a CN may hold a line break or an escape."""
        return [(label, printable(value)) for label, value in self._rows()]

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        subject = printable(self.subject_text) or "(no subject)"
        return f"<{type(self).__name__} {subject}, {self.key_description}>"

    _kind: ClassVar[Kind] = "csr"

    @property
    def pem(self) -> str:
        """Canonical PEM text (standard label, 64 columns, final newline)."""
        return PemBlock(self._kind, self.der).pem


@dataclass(frozen=True, repr=False)
class Csr(_Signed):
    """A certificate signing request, parsed and with its signature checked."""

    signature_valid: bool = True
    _title: ClassVar[str] = "Certificate signing request (CSR)"

    def _rows(self) -> list[tuple[str, str]]:
        verdict = (
            "valid: made with the private key that belongs to this public key"
            if self.signature_valid
            else "INVALID: the CSR was changed after it was made"
        )
        return [
            ("Subject", self.subject_text or "(empty)"),
            ("Common name", self.common_name or "(none)"),
            *self._name_notes(),
            ("Public key", self.key_description),
            ("Signature", f"{self.signature_algorithm}, {verdict}"),
            ("SHA-256", self.sha256_fingerprint),
        ]


@dataclass(frozen=True, repr=False)
class Certificate(_Signed):
    """An X.509 certificate, parsed."""

    issuer: tuple[NameAttribute, ...]
    not_before: datetime
    not_after: datetime
    serial_number: int
    is_ca: bool
    _tbs: bytes
    _signature: bytes
    _title: ClassVar[str] = "Certificate"
    _kind: ClassVar[Kind] = "certificate"

    @property
    def issuer_text(self) -> str:
        """The issuer as RFC 4514 text."""
        return name_text(self.issuer)

    @property
    def self_signed(self) -> bool:
        """Whether the issuer is the subject and the certificate's own key signed it."""
        return self.issuer == self.subject and self.signed_by(self)

    def signed_by(self, issuer: Certificate) -> bool:
        """Whether `issuer`'s key made this certificate's signature."""
        try:
            verify_certificate(issuer.public_key, self._signature, self._tbs, self.der)
        except (InvalidSignature, CertificateError):
            return False
        return True

    def valid_at(self, when: datetime | None = None) -> bool:
        """Whether `when` (default: now) is inside the validity period."""
        when = when or datetime.now(timezone.utc)
        return self.not_before <= when <= self.not_after

    def _rows(self) -> list[tuple[str, str]]:
        now = datetime.now(timezone.utc)
        until = _when(self.not_after)
        if now > self.not_after:
            until += "  (EXPIRED)"
        since = _when(self.not_before)
        if now < self.not_before:
            since += "  (not valid yet: check the computer's clock)"
        signer = "self-signed, valid" if self.self_signed else "by the issuer"
        return [
            ("Subject", self.subject_text or "(empty)"),
            ("Common name", self.common_name or "(none)"),
            *self._name_notes(),
            ("Issuer", self.issuer_text or "(empty)"),
            ("Valid from", since),
            ("Valid until", until),
            ("Serial", f"{self.serial_number:X}"),
            ("Public key", self.key_description),
            ("Signature", f"{self.signature_algorithm}, {signer}"),
            ("CA", "yes: it can sign other certificates" if self.is_ca else "no"),
            ("SHA-256", self.sha256_fingerprint),
        ]


def load_csr(text: str | bytes, *, verify: bool = True) -> Csr:
    """Parse a pasted CSR (any form `clean_pem` accepts, or DER) and check its signature."""
    der = _der_from(text, "csr")
    try:
        request = asn1_csr.CertificationRequest.load(der, strict=True)
        info = request["certification_request_info"]
        subject = _name(info["subject"])
        spki = info["subject_pk_info"].dump()
        algorithm = request["signature_algorithm"]
        signature = request["signature"].native
        tbs = info.dump()
    # RecursionError: ASN.1 nested thousands deep (a hostile paste), not a chip's CSR.
    except (ValueError, TypeError, KeyError, RecursionError) as error:
        raise CertificateError(_malformed("csr", error)) from None
    if sum(a.short_name == "CN" for a in subject) > 1:
        raise CertificateError(
            "The CSR names more than one device (two CN fields), so the cloud could file it "
            "under one name and the certificate carry another. Capture the CSR again with the "
            "CSR sketch: it writes one name."
        )
    csr = Csr(subject, spki, algorithm_name(algorithm), der)
    try:
        verify_signature(csr.public_key, signature, tbs, algorithm)
    except InvalidSignature:
        if verify:
            raise SignatureError(
                "The CSR's signature does not match its content: a character changed while it "
                "was copied. Copy the CSR again from the serial monitor, exactly as printed."
            ) from None
        return Csr(subject, spki, csr.signature_algorithm, der, signature_valid=False)
    return csr


def signing_problem(csr: Csr) -> str:
    """Why AWS IoT would not sign this CSR (its key, its signature), with what to use instead;
    "" if it would. Every cloud the kit runs signs only what AWS signs, so a CSR that works in
    class works on AWS too."""
    if not csr.signature_valid:
        return (
            "The CSR's signature does not match its content, so no cloud signs it. Copy the CSR "
            "again from the serial monitor, exactly as printed."
        )
    algorithm = asn1_csr.CertificationRequest.load(csr.der)["signature_algorithm"]
    return key_problem(csr.public_key) or digest_problem(algorithm)


def check_signable(csr: Csr) -> None:
    """Raise CertificateError (saying what to use) for a CSR AWS IoT would not sign."""
    problem = signing_problem(csr)
    if problem:
        raise CertificateError(problem)


def load_certificate(text: str | bytes) -> Certificate:
    """Parse a pasted certificate (any form `clean_pem` accepts, or DER)."""
    der = _der_from(text, "certificate")
    try:
        cert = asn1_x509.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        validity = tbs["validity"]
        constraints = cert.basic_constraints_value
        return Certificate(
            subject=_name(tbs["subject"]),
            public_key_der=tbs["subject_public_key_info"].dump(),
            signature_algorithm=algorithm_name(cert["signature_algorithm"]),
            der=der,
            issuer=_name(tbs["issuer"]),
            not_before=validity["not_before"].native,
            not_after=validity["not_after"].native,
            serial_number=tbs["serial_number"].native,
            is_ca=bool(constraints and constraints["ca"].native),
            _tbs=tbs.dump(),
            _signature=cert["signature_value"].native,
        )
    except (ValueError, TypeError, KeyError, RecursionError) as error:
        raise CertificateError(_malformed("certificate", error)) from None


def load_any(text: str) -> Csr | Certificate:
    """Parse pasted text that holds either a CSR or a certificate (for `kit inspect`)."""
    try:
        return load_csr(text)
    except WrongPemKindError:
        return load_certificate(text)
    except NotPemError:
        raise NotPemError(
            "No CSR or certificate found in the text. A CSR starts with -----BEGIN CERTIFICATE "
            "REQUEST-----, a certificate with -----BEGIN CERTIFICATE-----: copy the whole "
            "block, including those lines."
        ) from None


def matches(csr: Csr, certificate: Certificate) -> bool:
    """Whether the certificate carries the CSR's public key (so the chip's key goes with it)."""
    return canonical_key(csr.public_key_der) == canonical_key(certificate.public_key_der)


@dataclass(frozen=True)
class KeyMatch:
    """Whether a certificate carries a CSR's public key, as a sentence (truthy when it does)."""

    matches: bool
    device: str  # the certificate's common name

    def __bool__(self) -> bool:
        return self.matches

    def __str__(self) -> str:
        if self.matches:
            return (
                f"The certificate for {self.device} carries this CSR's public key: it works "
                "only with the private key inside this board's chip."
            )
        return (
            f"The certificate for {self.device} carries another public key than this CSR: it "
            "belongs to another CSR. Register this board's CSR again."
        )

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(printable(str(self)), quote=False)}</p>"


def compare(csr: Csr, certificate: Certificate) -> KeyMatch:
    """Whether the certificate goes with the CSR's key, said in a sentence for a notebook."""
    return KeyMatch(matches(csr, certificate), certificate.common_name or "(no name)")


def name_text(attributes: tuple[NameAttribute, ...]) -> str:
    """A name as RFC 4514 text: last field first, special characters escaped."""
    return ",".join(f"{a.short_name}={_escape_rfc4514(a.value)}" for a in reversed(attributes))


def describe_key(key: PublicKeyTypes) -> str:
    """Key type and size or curve in words."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        nist = {"secp256r1": "P-256 (prime256v1)", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"EC {nist.get(key.curve.name, key.curve.name)}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    return type(key).__name__


# Helpers


def _der_from(text: str | bytes, kind: Kind) -> bytes:
    """DER bytes from pasted text, PEM bytes or DER bytes."""
    if isinstance(text, bytes):
        if text[:1] == b"\x30":
            return text
        text = text.decode("utf-8", errors="replace")
    return read_block(text, kind).der


def _name(name: asn1_x509.Name) -> tuple[NameAttribute, ...]:
    """Name attributes in encoded order, keeping each value's string type."""
    attributes = []
    for rdn in name.chosen:
        for atv in rdn:
            kind = atv["type"]
            value = atv["value"]
            inner = getattr(value, "chosen", value)
            text = inner.native
            if isinstance(text, bytes):
                text = text.decode("latin-1")
            attributes.append(
                NameAttribute(
                    short_name=_SHORT_NAMES.get(kind.native, kind.dotted),
                    oid=kind.dotted,
                    value=str(text),
                    string_type=_string_type(inner),
                )
            )
    return tuple(attributes)


def _string_type(value: object) -> str:
    names = {"PrintableString": "PrintableString", "UTF8String": "UTF8String"}
    name = type(value).__name__
    return names.get(name, name)


def _malformed(kind: Literal["csr", "certificate"], error: Exception) -> str:
    what = "CSR" if kind == "csr" else "certificate"
    return (
        f"The text decodes, but it is not a valid {what} ({error}). Part of it is missing or "
        f"was changed while copying: copy the whole {what} again."
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _escape_rfc4514(value: str) -> str:
    """Escape a name value as RFC 4514 (and OpenSSL's RFC2253 output) does."""
    out = re.sub(r'([,+"\\<>;])', r"\\\1", value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out
