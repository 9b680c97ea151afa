"""load_csr / load_certificate against what openssl prints for the same files."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from helpers import csr_pem, new_key, serial_monitor

from kit import certs, errors
from kit.pem import PemBlock


def openssl(*args: str) -> str:
    """Run openssl and return what it printed."""
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=True)
    return done.stdout + done.stderr


def save(tmp_path: Path, text: str, name: str = "file.pem") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def pubkey_pem(item: certs.Csr | certs.Certificate) -> str:
    return item.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


CSR_SUBJECTS = [
    {"CN": "0123C13DA283AFA5EE"},
    {"CN": "device_01"},
    {"CN": "lab:bench-3_node"},
    {
        "C": "US",
        "ST": "Massachusetts",
        "L": "Boston",
        "O": "Example Uni",
        "OU": "IoT 101",
        "CN": "a",
    },
    {"O": "Comma, Inc.", "CN": "x" * 64},
]


@pytest.mark.parametrize("fields", CSR_SUBJECTS, ids=lambda f: f["CN"][:20])
def test_csr_fields_equal_openssl(tmp_path: Path, fields: dict[str, str]) -> None:
    key = new_key()
    text = csr_pem(key=key, **fields)
    csr = certs.load_csr(serial_monitor(text))
    path = save(tmp_path, text)

    assert csr.common_name == fields["CN"]
    assert (
        "subject=" + csr.subject_text
        == openssl("req", "-in", path, "-noout", "-subject", "-nameopt", "RFC2253").strip()
    )
    assert pubkey_pem(csr) == openssl("req", "-in", path, "-noout", "-pubkey")
    assert "verify OK" in openssl("req", "-in", path, "-noout", "-verify")
    assert csr.signature_valid
    assert csr.signature_algorithm == "ECDSA with SHA-256"
    assert csr.key_description == "EC P-256 (prime256v1)"
    assert "prime256v1" in openssl("req", "-in", path, "-noout", "-text")
    assert [a.string_type for a in csr.subject] == ["PrintableString"] * len(fields)
    assert csr.pem == certs.clean_pem(text, "csr")


def test_chip_name_with_underscore_is_kept_and_described_as_nonstandard() -> None:
    csr = certs.load_csr(csr_pem("device_01"))
    assert csr.common_name == "device_01"
    assert [(a.short_name, a.nonstandard) for a in csr.nonstandard_fields] == [("CN", "_")]
    text = csr.describe()
    assert "CN=device_01" in text
    assert "'_'" in text and "PrintableString" in text
    assert "valid" in text


def test_standard_name_has_no_note() -> None:
    csr = certs.load_csr(csr_pem("0123C13DA283AFA5EE"))
    assert csr.nonstandard_fields == ()
    assert "Note" not in csr.describe()


def test_tampered_csr_fails_the_signature_check(tmp_path: Path) -> None:
    good = certs.load_csr(csr_pem("device_01"))
    bad_der = good.der.replace(b"device_01", b"device_02")
    bad_pem = PemBlock("csr", bad_der).pem
    checked = subprocess.run(
        ["openssl", "req", "-in", save(tmp_path, bad_pem), "-noout", "-verify"],
        capture_output=True,
        text=True,
    )
    assert "verify failure" in checked.stdout + checked.stderr
    with pytest.raises(errors.SignatureError, match="Copy the CSR again"):
        certs.load_csr(bad_pem)
    unverified = certs.load_csr(bad_pem, verify=False)
    assert not unverified.signature_valid
    assert "INVALID" in unverified.describe()


def test_certificate_fields_equal_openssl(tmp_path: Path, ca, key) -> None:
    text = ca.issue(key.public_key(), "device_01", days=30)
    cert = certs.load_certificate(text)
    path = save(tmp_path, text)

    def x509_out(*args: str) -> str:
        return openssl("x509", "-in", path, "-noout", *args).strip()

    assert "subject=" + cert.subject_text == x509_out("-subject", "-nameopt", "RFC2253")
    assert "issuer=" + cert.issuer_text == x509_out("-issuer", "-nameopt", "RFC2253")
    assert int(x509_out("-serial").split("=")[1], 16) == cert.serial_number
    assert x509_out("-fingerprint", "-sha256").split("=")[1] == cert.sha256_fingerprint
    assert pubkey_pem(cert) == openssl("x509", "-in", path, "-noout", "-pubkey")
    start = dt.datetime.strptime(x509_out("-startdate").split("=")[1], "%b %d %H:%M:%S %Y GMT")
    end = dt.datetime.strptime(x509_out("-enddate").split("=")[1], "%b %d %H:%M:%S %Y GMT")
    assert cert.not_before == start.replace(tzinfo=dt.timezone.utc)
    assert cert.not_after == end.replace(tzinfo=dt.timezone.utc)
    assert (
        openssl("verify", "-CAfile", save(tmp_path, ca.pem, "ca.pem"), path).strip().endswith("OK")
    )
    assert cert.signed_by(certs.load_certificate(ca.pem))
    assert not cert.self_signed
    assert not cert.is_ca
    assert cert.common_name == "device_01"
    assert cert.nonstandard_fields[0].value == "device_01"
    assert cert.valid_at()


def test_certificate_description(ca, key) -> None:
    cert = certs.load_certificate(ca.issue(key.public_key(), "device_01"))
    text = cert.describe()
    for words in (
        "Subject:",
        "CN=device_01",
        "Issuer:",
        "CN=Kit Test CA",
        "Valid from:",
        "Valid until:",
        "EC P-256",
        "ECDSA with SHA-256",
        cert.sha256_fingerprint,
    ):
        assert words in text
    html = cert._repr_html_()
    assert "<table>" in html and "CN=device_01" in html


def test_expired_certificate_says_so(ca, key) -> None:
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    cert = certs.load_certificate(ca.issue(key.public_key(), "old", days=1, start=start))
    assert not cert.valid_at()
    assert "EXPIRED" in cert.describe()


def test_ca_certificate_is_self_signed_and_a_ca(ca) -> None:
    cert = certs.load_certificate(ca.pem)
    assert cert.self_signed and cert.is_ca
    assert "self-signed, valid" in cert.describe()


def test_rsa_certificate(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Amazon Root CA 1"),
        ]
    )
    now = dt.datetime.now(dt.timezone.utc)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    text = built.public_bytes(serialization.Encoding.PEM).decode()
    cert = certs.load_certificate(text)
    assert cert.key_description == "RSA 2048 bits"
    assert cert.signature_algorithm == "RSA with SHA-256"
    assert cert.self_signed
    path = save(tmp_path, text)
    assert (
        "subject=" + cert.subject_text
        == openssl("x509", "-in", path, "-noout", "-subject", "-nameopt", "RFC2253").strip()
    )


def test_matches_compares_public_keys(ca, key) -> None:
    csr = certs.load_csr(csr_pem("device_01", key=key))
    assert certs.matches(csr, certs.load_certificate(ca.issue(key.public_key(), "device_01")))
    other = certs.load_certificate(ca.issue(new_key().public_key(), "device_01"))
    assert not certs.matches(csr, other)


def test_load_accepts_der_bytes(ca, key) -> None:
    csr = certs.load_csr(csr_pem("d1", key=key))
    assert certs.load_csr(csr.der) == csr
    cert = certs.load_certificate(ca.issue(key.public_key(), "d1"))
    assert certs.load_certificate(cert.der) == cert


@pytest.mark.parametrize(
    "name", ["0123C13DA283AFA5EE", "device_01", "lab-bench-3", "a", "x" * 64, "Z_9-", "COM10"]
)
def test_valid_device_names(name: str) -> None:
    checked = certs.validate_device_name(name)
    assert checked.name == name


def test_device_name_notes_nonstandard_characters() -> None:
    assert certs.validate_device_name("device_01").nonstandard_characters == "_"
    assert "'_'" in certs.validate_device_name("device_01").note
    assert certs.validate_device_name("device-01").note == ""


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "empty"),
        ("x" * 65, "65 characters; at most 64"),
        ("my device", "a space; use '-' or '_'"),
        ("room/1", "'/', which would split the MQTT topic"),
        ("dev+1", "'+', an MQTT wildcard"),
        ("dev#1", "'#', an MQTT wildcard"),
        ("dev.1", "'.', which AWS thing names do not allow"),
        ("café", "'é', which is not a plain ASCII letter"),
        ("a@b", "'@'; use only letters, digits"),
        ("lab:bench-3", "':', which Windows does not allow in a folder name"),
        ("nul", "one Windows keeps for itself"),
    ],
)
def test_invalid_device_names_name_the_character(name: str, words: str) -> None:
    with pytest.raises(errors.DeviceNameError) as caught:
        certs.validate_device_name(name)
    assert words in str(caught.value)


def test_a_csr_naming_two_devices_is_refused() -> None:
    # The cloud would file it under one name and the certificate would carry both.
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = new_key()
    two = cx509.Name(
        [
            cx509.NameAttribute(NameOID.COMMON_NAME, "bob_two"),
            cx509.NameAttribute(NameOID.COMMON_NAME, "alice_board"),
        ]
    )
    request = cx509.CertificateSigningRequestBuilder().subject_name(two).sign(key, hashes.SHA256())
    with pytest.raises(errors.CertificateError, match="more than one device"):
        certs.load_csr(request.public_bytes(serialization.Encoding.PEM))


def test_asn1_nested_thousands_deep_is_a_message_not_a_crash() -> None:
    # A signed CSR with a name value nested 3000 deep (found by an attack on the
    # class site: it raised RecursionError, an HTTP 500 and a thousand-line log).
    from cryptography.hazmat.primitives.asymmetric import ec

    def tlv(tag: int, body: bytes) -> bytes:
        size = len(body)
        if size < 128:
            return bytes([tag, size]) + body
        octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
        return bytes([tag, 0x80 | len(octets)]) + octets + body

    nested = b"\x05\x00"
    for _ in range(3000):
        nested = tlv(0x30, nested)
    unknown_attribute = bytes.fromhex("2a0304")  # an OID no library knows: parsed as it comes
    subject = tlv(0x30, tlv(0x31, tlv(0x30, tlv(0x06, unknown_attribute) + nested)))
    key = new_key()
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = tlv(0x30, tlv(0x02, b"\x00") + subject + spki + tlv(0xA0, b""))
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    algorithm = tlv(0x30, tlv(0x06, bytes.fromhex("2a8648ce3d040302")))
    request = tlv(0x30, info + algorithm + tlv(0x03, b"\x00" + signature))
    with pytest.raises(errors.CertificateError):
        certs.load_csr(request)
