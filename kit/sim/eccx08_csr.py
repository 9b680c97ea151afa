"""Encode a CSR byte for byte the way ArduinoECCX08's ECCX08CSR does.

The library writes every subject field as a PrintableString whatever it holds (so `device_01`
becomes a non-standard PrintableString), a P-256 public key, an empty attribute set and an
ECDSA-with-SHA-256 signature. The virtual chip and the tests use this to make CSRs that look
exactly like a real board's.
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# The order ECCX08CSR writes the fields in, with each attribute type's last OID byte (2.5.4.x).
SUBJECT_ORDER: tuple[tuple[str, int], ...] = (
    ("C", 0x06),
    ("ST", 0x08),
    ("L", 0x07),
    ("O", 0x0A),
    ("OU", 0x0B),
    ("CN", 0x03),
)
_EC_PUBLIC_KEY_P256 = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107")
_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def der(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def subject_der(fields: Mapping[str, str]) -> bytes:
    """The subject Name with every non-empty field as a PrintableString, in the library's order."""
    unknown = set(fields) - {name for name, _ in SUBJECT_ORDER}
    if unknown:
        raise ValueError(f"unknown subject fields: {sorted(unknown)}")
    rdns = b""
    for name, oid_byte in SUBJECT_ORDER:
        value = fields.get(name, "")
        if value:
            oid = der(0x06, bytes([0x55, 0x04, oid_byte]))
            rdns += der(0x31, der(0x30, oid + der(0x13, value.encode("utf-8"))))
    return der(0x30, rdns)


def chip_csr(private_key: ec.EllipticCurvePrivateKey, fields: Mapping[str, str]) -> bytes:
    """A DER CSR for a P-256 key and subject fields, encoded as the ECCX08 library encodes it."""
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise ValueError("the ECCX08 only holds P-256 keys")
    point = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    spki = der(0x30, _EC_PUBLIC_KEY_P256 + der(0x03, b"\x00" + point))
    version = der(0x02, b"\x00")
    info = der(0x30, version + subject_der(fields) + spki + b"\xa0\x00")
    signature = private_key.sign(info, ec.ECDSA(hashes.SHA256()))
    return der(0x30, info + _ECDSA_SHA256 + der(0x03, b"\x00" + signature))


def chip_pem(der_bytes: bytes) -> str:
    """PEM as the library's PEMUtils writes it: LF line ends, base64 wrapped at 76 columns."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der_bytes).decode("ascii"), 76))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"
