"""Amazon's roots behind AWS IoT's ATS endpoints: Amazon Root CA 1 (RSA) and Root CA 3 (ECC).

AWS presents a chain that ends at one or the other depending on the cipher suite the client and
the endpoint agree on ("Server authentication" in the AWS IoT developer guide), and does not say
which suite it picks when a client offers both, as the board's TLS library does. So everything
that talks to AWS trusts both: the board (sketches/AWS/amazon_trust_anchors.h), the virtual board
and the observer. It sits at the bottom of the kit because the AWS cloud and the boards need it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

# SHA-256 fingerprints as published at https://www.amazontrust.com/repository/
AMAZON_ROOTS = {
    "Amazon Root CA 1": "8ECDE6884F3D87B1125BA31AC3FCB13D7016DE7F57CC904FE1CB97C6AE98196E",
    "Amazon Root CA 3": "18CE6CFE7BF14E60B2E347B8DFE868CB31D02EBB3ADA271569F50343B46DB3A4",
}


def amazon_roots_file() -> Path:
    """The file that holds both Amazon roots (shipped inside the package)."""
    return Path(str(resources.files("kit").joinpath("AmazonRootCAs.pem")))


def amazon_roots() -> str:
    """Amazon Root CA 1 and Amazon Root CA 3, in PEM."""
    return amazon_roots_file().read_text(encoding="ascii")


def is_amazon_roots(ca_pem: str) -> bool:
    """Whether `ca_pem` holds only Amazon roots (what a device registered on AWS keeps, with
    Root CA 1 alone in records made before Root CA 3 was added)."""
    try:
        found = x509.load_pem_x509_certificates(ca_pem.encode("ascii", errors="replace"))
    except ValueError:
        return False
    known = set(AMAZON_ROOTS.values())
    return all(cert.fingerprint(hashes.SHA256()).hex().upper() in known for cert in found)
