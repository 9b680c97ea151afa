"""Signatures on CSRs and certificates: which algorithm, and whether it checks out.

The kit checks what the chip makes (ECDSA with SHA-256) and what clouds return (ECDSA or RSA);
anything else is named, not guessed at.
"""

from __future__ import annotations

from collections.abc import Callable

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from kit.errors import CertificateError

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def algorithm_name(algorithm: asn1_x509.SignedDigestAlgorithm) -> str:
    """A signature algorithm in words, e.g. "ECDSA with SHA-256"."""
    try:
        signature, digest = algorithm.signature_algo, algorithm.hash_algo
    except ValueError:
        return str(algorithm["algorithm"].native)
    pretty = {"ecdsa": "ECDSA", "rsassa_pkcs1v15": "RSA", "rsassa_pss": "RSA-PSS", "dsa": "DSA"}
    return f"{pretty.get(signature, signature)} with {digest.upper().replace('SHA', 'SHA-')}"


def verify_signature(
    key: PublicKeyTypes, signature: bytes, data: bytes, algorithm: asn1_x509.SignedDigestAlgorithm
) -> None:
    """Verify a signature or raise InvalidSignature; CertificateError for what we cannot check."""
    try:
        digest = _HASHES[algorithm.hash_algo]()
        kind = algorithm.signature_algo
    except (KeyError, ValueError):
        raise CertificateError(
            f"The signature uses {algorithm['algorithm'].native}, which the kit cannot check."
        ) from None
    if kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(digest))
    elif kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), digest)
    else:
        raise CertificateError(f"The signature uses {kind}, which the kit cannot check.")


def verify_certificate(key: PublicKeyTypes, signature: bytes, tbs: bytes, der: bytes) -> None:
    """Verify a certificate's signature with `key`."""
    algorithm = asn1_x509.Certificate.load(der)["signature_algorithm"]
    verify_signature(key, signature, tbs, algorithm)


def canonical_key(spki: bytes) -> bytes:
    """A public key in one DER form, so keys encoded two ways compare equal."""
    key = serialization.load_der_public_key(spki)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
