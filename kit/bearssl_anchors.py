"""BearSSL trust anchors written as C: what the board checks the broker's chain against.

BearSSL does not read a CA certificate on the board; it takes the CA's subject name (DER, as the
certificate has it, byte for byte: BearSSL compares it with each certificate's issuer) and its
public key as arrays in a `br_x509_trust_anchor`. The kit writes them from PEM: the local
cloud's CA into config.h, Amazon's roots into sketches/AWS/amazon_trust_anchors.h.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kit.certs import load_certificate
from kit.errors import ConfigError
from kit.places import checkout
from kit.trust import amazon_roots

HEADER_NAME = "amazon_trust_anchors.h"


@dataclass(frozen=True)
class TrustAnchor:
    """A CA as BearSSL holds it: subject DER and key (an EC P-256 point, or RSA n and e)."""

    name: str  # the CA's common name, for comments
    dn: bytes
    ec_q: bytes = b""
    rsa_n: bytes = b""
    rsa_e: bytes = b""


def from_pem(pem: str) -> TrustAnchor:
    """The trust anchor for the one CA certificate in `pem` (P-256 or RSA key)."""
    ca = load_certificate(pem)
    dn = asn1_x509.Certificate.load(ca.der)["tbs_certificate"]["subject"].dump()
    key = ca.public_key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        point = key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return TrustAnchor(ca.common_name, dn, ec_q=point)
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return TrustAnchor(
            ca.common_name, dn, rsa_n=_unsigned(numbers.n), rsa_e=_unsigned(numbers.e)
        )
    raise ConfigError(
        f"The CA '{ca.common_name}' has a {ca.key_description} key; BearSSL anchors "
        "here are P-256 or RSA."
    )


def hex_rows(data: bytes) -> str:
    """Bytes as C initialiser rows, twelve a line."""
    rows = [", ".join(f"0x{b:02X}" for b in data[i : i + 12]) for i in range(0, len(data), 12)]
    return ",\n".join(f"    {row}" for row in rows)


def amazon_header() -> str:
    """The text of sketches/AWS/amazon_trust_anchors.h, from the roots the kit ships."""
    anchors = [from_pem(block) for block in _pem_blocks(amazon_roots())]
    arrays, entries = [], []
    for anchor in anchors:
        prefix = anchor.name.upper().replace(" ", "_")
        arrays.append(_array(f"{prefix}_DN", anchor.dn))
        if anchor.ec_q:
            arrays.append(_array(f"{prefix}_EC_Q", anchor.ec_q))
            key = _EC_KEY.format(q=_ref(f"{prefix}_EC_Q"))
        else:
            arrays.append(_array(f"{prefix}_RSA_N", anchor.rsa_n))
            arrays.append(_array(f"{prefix}_RSA_E", anchor.rsa_e))
            key = _RSA_KEY.format(n=_ref(f"{prefix}_RSA_N"), e=_ref(f"{prefix}_RSA_E"))
        entries.append(_ENTRY.format(name=anchor.name, dn=_ref(f"{prefix}_DN"), key=key))
    return _HEADER.format(arrays="\n".join(arrays), entries="".join(entries), count=len(anchors))


def amazon_header_path() -> str:
    """Where the header lives in the checkout."""
    return str(checkout() / "sketches" / "AWS" / HEADER_NAME)


_HEADER = """\
// Amazon's roots behind AWS IoT as BearSSL trust anchors: Amazon Root CA 1 (RSA 2048) and Amazon
// Root CA 3 (ECC P-256). AWS ends the chain it presents at one or the other depending on the
// cipher suite it agrees with the board (AWS IoT developer guide, "Server authentication"), and
// the board's TLS library offers both kinds of suite, so the sketch trusts both, and no other
// root. Written from kit/AmazonRootCAs.pem by tools/render_trust_anchors.py; do not edit.
#pragma once

#if !KIT_LOCAL_CA
{arrays}

static const br_x509_trust_anchor AMAZON_TRUST_ANCHORS[] = {{
{entries}}};
static const int AMAZON_TRUST_ANCHORS_NUM = {count};
#endif
"""
_ENTRY = """\
  {{  // {name}
    {{{dn}}},
    BR_X509_TA_CA,
    {key},
  }},
"""
_RSA_KEY = """{{BR_KEYTYPE_RSA, {{.rsa = {{
      {n},
      {e}}}}}}}"""
_EC_KEY = """{{BR_KEYTYPE_EC, {{.ec = {{
      BR_EC_secp256r1, {q}}}}}}}"""


def _array(name: str, data: bytes) -> str:
    return f"static const unsigned char {name}[] = {{\n{hex_rows(data)}\n}};"


def _ref(name: str) -> str:
    return f"(unsigned char*){name}, sizeof {name}"


def _unsigned(value: int) -> bytes:
    """A positive integer as big-endian bytes without leading zeros (BearSSL's form)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _pem_blocks(text: str) -> list[str]:
    """Each certificate block in a PEM file, comments between them dropped."""
    end = "-----END CERTIFICATE-----"
    return [
        part[part.index("-----BEGIN") :] + end + "\n"
        for part in text.split(end)
        if "-----BEGIN" in part
    ]
