"""Signatures on CSRs and certificates: which algorithm, whether it checks out, and whether a
cloud would sign a certificate for the key.

The kit checks what the chip makes (ECDSA with SHA-256) and what clouds return (ECDSA or RSA);
anything else is named, not guessed at. What may be signed is AWS IoT's rule, so a CSR the local
cloud signs is one AWS would sign too (key_problem, digest_problem).
"""

from __future__ import annotations

from collections.abc import Callable

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from kit.errors import CertificateError

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
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
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        # EdDSA hashes inside the signature: checked here so the key can be named (and refused)
        # with what to use instead, rather than called something the kit cannot read.
        if algorithm["algorithm"].native not in ("ed25519", "ed448"):
            raise CertificateError(_CANNOT_CHECK.format(algorithm["algorithm"].native))
        key.verify(signature, data)
        return
    try:
        digest = _HASHES[algorithm.hash_algo]()
        kind = algorithm.signature_algo
    except (KeyError, ValueError):
        raise CertificateError(_CANNOT_CHECK.format(algorithm["algorithm"].native)) from None
    if kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(digest))
    elif kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), digest)
    else:
        raise CertificateError(_CANNOT_CHECK.format(kind))


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


# What AWS IoT signs. CreateCertificateFromCsr's reference (and botocore's model of it): "The CSR
# must include a public key that is either an RSA key with a length of at least 2048 bits or an
# ECC key from NIST P-256, NIST P-384, or NIST P-521 curves"; the developer guide's "certificate
# signing algorithms supported by AWS IoT" are SHA-256/384/512 with RSA or ECDSA (no SHA-1).
MIN_RSA_BITS = 2048
SIGNED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
SIGNED_DIGESTS = frozenset({"sha256", "sha384", "sha512"})
# AWS documents no rule for the RSA exponent. FIPS 186-4 (B.3.1) and the CA/Browser Forum take
# an odd e with 2^16 < e < 2^256: 65537, every tool's default, is the smallest. e = 3 is out
# (it invites the 2006 forgery of PKCS#1 signatures on lax checkers, and no tool makes it
# unasked), and so is a hand-made giant e, which only a broken or crafted key has.
RSA_EXPONENTS = (2**16 + 1, 2**256 - 1)

_CANNOT_CHECK = (
    "The signature uses {}, which the kit cannot check: it checks RSA and ECDSA signatures "
    "made with SHA-256, SHA-384 or SHA-512, the ones AWS IoT takes."
)
_USE = (
    "Capture the CSR again with the board's CSR sketch (notebook 01): the chip makes an EC "
    "P-256 key and signs with SHA-256, which AWS IoT takes. A CSR made with OpenSSL needs an "
    "EC P-256 key (or RSA of 2048 bits or more, exponent 65537) and -sha256."
)


def key_problem(key: PublicKeyTypes) -> str:
    """Why AWS IoT would not sign a certificate for `key`, and what to use; "" if it would."""
    takes = "AWS IoT, and so the kit's cloud, signs"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return (
                f"The CSR's key is RSA {key.key_size} bits, too short to be safe: {takes} RSA "
                f"keys of {MIN_RSA_BITS} bits or more, or EC keys on NIST P-256, P-384 or "
                f"P-521. {_USE}"
            )
        exponent = key.public_numbers().e
        low, high = RSA_EXPONENTS
        if not (low <= exponent <= high and exponent % 2):
            shown = str(exponent) if exponent < 10**12 else f"a {exponent.bit_length()}-bit number"
            return (
                f"The CSR's RSA key has the public exponent {shown}: the kit's cloud signs RSA "
                "keys whose exponent is odd, from 65537 up to 2^256 (FIPS 186-4's rule; 65537 is "
                f"what every tool makes unless told otherwise). {_USE}"
            )
        return ""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in SIGNED_CURVES:
            return (
                f"The CSR's key is on the curve {key.curve.name}: {takes} EC keys on the NIST "
                f"curves P-256, P-384 and P-521 only (or RSA of {MIN_RSA_BITS} bits or more). "
                f"{_USE}"
            )
        return ""
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
    return (
        f"The CSR's key is {kind}: {takes} RSA keys of {MIN_RSA_BITS} bits or more and EC keys "
        f"on NIST P-256, P-384 or P-521 only. {_USE}"
    )


def digest_problem(algorithm: asn1_x509.SignedDigestAlgorithm) -> str:
    """Why AWS IoT would not take a CSR signed this way, and what to use; "" if it would."""
    try:
        digest = algorithm.hash_algo
    except ValueError:
        digest = str(algorithm["algorithm"].native)
    if digest in SIGNED_DIGESTS:
        return ""
    shown = digest.upper().replace("SHA", "SHA-") if digest.startswith("sha") else digest
    return (
        f"The CSR is signed with {shown}, which AWS IoT, and so the kit's cloud, does not take: "
        f"it takes SHA-256, SHA-384 or SHA-512. {_USE}"
    )
