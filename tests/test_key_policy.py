"""The local CA signs only what AWS IoT's CreateCertificateFromCsr signs, and the class server
refuses the rest before a student's device place is taken; a name that differs from a held one
only in case is refused.

What AWS does, from its documentation (botocore's model of CreateCertificateFromCsr says the
same): "The CSR must include a public key that is either an RSA key with a length of at least
2048 bits or an ECC key from NIST P-256, NIST P-384, or NIST P-521 curves", and the signing
algorithms AWS IoT supports are SHA-256/384/512 with RSA or ECDSA (and RSASSA-PSS): no SHA-1.
AWS documents no rule on the RSA exponent; the kit takes FIPS 186-4's (odd, 2^16 < e < 2^256),
which every tool's default (65537) meets.

The odd keys are made by OpenSSL (`cryptography` makes neither RSA-512 nor SHA-1 signatures).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from class_site import Site, cloud, site
from helpers import csr_pem

from kit import certs
from kit.cloud.local import LocalCloud
from kit.cloud.local_ca import LocalCA
from kit.errors import CertificateError

__all__ = ["cloud", "site"]  # fixtures


def openssl_csr(folder: Path, name: str, key_options: list[str], digest: str | None) -> str:
    """A CSR for CN `name` made by OpenSSL with a key made from `key_options`, signed with
    `digest` (None: the key type's own, as Ed25519 has)."""
    key = folder / f"{name}.key"
    subprocess.run(
        ["openssl", "genpkey", *key_options, "-out", str(key)], capture_output=True, check=True
    )
    command = ["openssl", "req", "-new", "-key", str(key), "-subj", f"/CN={name}"]
    done = subprocess.run(
        command + ([f"-{digest}"] if digest else []), capture_output=True, text=True, check=True
    )
    return done.stdout


def rsa(bits: int, exponent: int = 65537) -> list[str]:
    return [
        "-algorithm",
        "RSA",
        "-pkeyopt",
        f"rsa_keygen_bits:{bits}",
        "-pkeyopt",
        f"rsa_keygen_pubexp:{exponent}",
    ]


def ec(curve: str) -> list[str]:
    return ["-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}"]


@dataclass(frozen=True)
class Kind:
    """A key and signature a student might send, and what AWS IoT does with it."""

    name: str
    key: list[str]
    digest: str | None
    aws_signs: bool
    aws_says: str  # where AWS's documentation says so
    fix: str = ""  # what the kit's refusal must name for the student to use


API_DOC = "CreateCertificateFromCsr: RSA of at least 2048 bits, or NIST P-256/P-384/P-521"
SIGNING = "x509-certs: SHA256/384/512 with RSA, ECDSA with SHA256/384/512; no SHA-1"
EXPONENT = "AWS documents no exponent rule; the kit refuses outside FIPS 186-4's 2^16 < e < 2^256"

KINDS = [
    Kind("RSA-512", rsa(512), "sha256", False, API_DOC, "2048"),
    Kind("RSA-1024", rsa(1024), "sha256", False, API_DOC, "2048"),
    Kind("RSA-2048 e=3", rsa(2048, 3), "sha256", False, EXPONENT, "65537"),
    Kind("RSA-2048 e=65537", rsa(2048), "sha256", True, API_DOC),
    Kind("RSA-2048 e=2^264+1", rsa(2048, 2**264 + 1), "sha256", False, EXPONENT, "65537"),
    Kind("RSA-2048 SHA-1", rsa(2048), "sha1", False, SIGNING, "SHA-256"),
    Kind("RSA-2048 SHA-512", rsa(2048), "sha512", True, SIGNING),
    Kind("EC secp256k1", ec("secp256k1"), "sha256", False, API_DOC, "P-256"),
    Kind("EC P-256", ec("P-256"), "sha256", True, API_DOC),
    Kind("EC P-384", ec("P-384"), "sha384", True, API_DOC),
    Kind("EC P-521", ec("P-521"), "sha512", True, API_DOC),
    Kind("EC P-256 SHA-1", ec("P-256"), "sha1", False, SIGNING, "SHA-256"),
    Kind("EC P-256 SHA-224", ec("P-256"), "sha224", False, SIGNING, "SHA-256"),
    Kind("Ed25519", ["-algorithm", "ED25519"], None, False, API_DOC, "P-256"),
]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_the_local_ca_signs_what_aws_signs_and_nothing_else(tmp_path: Path, kind: Kind) -> None:
    pem = openssl_csr(tmp_path, "policy_device", kind.key, kind.digest)
    ca = LocalCA(tmp_path / "ca")
    try:
        csr = certs.load_csr(pem)
        signed = certs.load_certificate(ca.sign_csr(csr))
    except CertificateError as refused:
        assert not kind.aws_signs, (
            f"{kind.name}: AWS signs it ({kind.aws_says}); the kit: {refused}"
        )
        assert kind.fix in str(refused), str(refused)  # the message says what to use instead
        return
    assert kind.aws_signs, f"{kind.name}: AWS refuses it ({kind.aws_says}); the kit signed it"
    assert certs.matches(csr, signed)


def test_a_key_aws_would_refuse_never_takes_a_device_place(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    ada = site.api("ada")
    refused = []
    for number in range(6):  # one more than a student's places
        pem = openssl_csr(tmp_path, f"weak_{number}", rsa(1024), "sha256")
        answer = ada.post("/things", json={"csr": pem, "slot": 0})
        refused.append(answer.status_code)
        assert answer.status_code == 400, answer.text
        assert "2048" in answer.json()["detail"] and "P-256" in answer.json()["detail"]
    assert refused == [400] * 6
    assert site.store.things_of("ada") == [] and not any(
        t.startswith("weak_") for t in cloud.things()
    )
    # Every place is still there for a board's own key.
    good = ada.post("/things", json={"csr": csr_pem("ada_board"), "slot": 0})
    assert good.status_code == 201, good.text


def test_a_case_variant_of_a_held_name_is_refused(site: Site, cloud: LocalCloud) -> None:
    ada, bob = site.api("ada"), site.api("bob")
    assert ada.post("/things", json={"csr": csr_pem("Lab_Board")}).status_code == 201
    for variant in ("lab_board", "LAB_BOARD", "Lab_board"):
        answer = bob.post("/things", json={"csr": csr_pem(variant)})
        assert answer.status_code == 400, answer.text
        detail = answer.json()["detail"]
        assert "only in upper and lower case" in detail and "Lab_Board" in detail, detail
        assert re.search(r"\bada\b", detail, re.IGNORECASE) is None  # whose it is stays private
    # Not even its owner gets a second device that reads the same.
    mine = ada.post("/things", json={"csr": csr_pem("LAB_board")})
    assert mine.status_code == 400 and "only in upper and lower case" in mine.json()["detail"]
    assert site.store.all_things() == {"Lab_Board": "ada"}
    assert [t for t in cloud.things() if t.lower() == "lab_board"] == ["Lab_Board"]
