"""A CSR made on the laptop, not in a chip: what a CSR's signature does not prove (notebook 02).

Its key is made here with `cryptography` and never saved; its signature verifies like the
chip's, and the cloud issues a certificate for it all the same. The course registers it and
removes it again at once, so no device is left behind and the current device stays as it was.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kit.certs import Csr, load_csr, validate_device_name
from kit.cloud import Cloud


def make(name: str) -> Csr:
    """A CSR for `name` signed by a P-256 key made on this computer (and then forgotten)."""
    validate_device_name(name)
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return load_csr(request.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class Proof:
    """What happened to a laptop-made CSR: its signature checked, a certificate issued."""

    thing: str
    cloud: str
    certificate_id: str

    def __str__(self) -> str:
        return (
            f"A CSR made on this laptop for '{self.thing}', with a key that was never in any chip: "
            f"its signature is valid, and the {self.cloud} cloud issued a certificate for it "
            f"({self.certificate_id[:16]}…), removed again just now. So what did the signature "
            "prove? Only that whoever made the CSR holds its key, not that a chip made it."
        )


def register_and_remove(cloud: Cloud) -> Proof:
    """Register a laptop-made CSR in `cloud` (a new name each time), then remove it."""
    name = f"laptop_{secrets.token_hex(4)}"
    registration = cloud.register(make(name))  # a failed registration leaves nothing behind
    try:
        return Proof(name, cloud.name, registration.certificate_id)
    finally:
        cloud.unregister(name)
