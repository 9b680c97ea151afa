"""clean_pem: every way people paste a PEM block, and every way a paste goes wrong."""

from __future__ import annotations

import base64
import re
import textwrap

import pytest
from helpers import csr_pem, private_key_pem, serial_monitor

from kit import errors
from kit.pem import clean_pem, read_block

CANONICAL = re.compile(
    r"-----BEGIN CERTIFICATE REQUEST-----\n([A-Za-z0-9+/=]{64}\n)*[A-Za-z0-9+/=]{1,64}\n"
    r"-----END CERTIFICATE REQUEST-----\n\Z"
)


@pytest.fixture(scope="module")
def chip() -> str:
    """A CSR exactly as the board prints it."""
    return csr_pem("device_01")


def body_of(pem: str) -> str:
    return "".join(pem.strip().splitlines()[1:-1])


def rewrap(pem: str, width: int) -> str:
    lines = textwrap.wrap(body_of(pem), width)
    return "\n".join(
        ["-----BEGIN CERTIFICATE REQUEST-----", *lines, "-----END CERTIFICATE REQUEST-----"]
    )


def serial_log(pem: str) -> str:
    return (
        "Would you like to generate a new private key? (Y/n) [Y]: Y\n\n"
        "Here's your CSR, enjoy!\n\n" + pem + "\n"
    )


PASTES = {
    "as printed": lambda p: p,
    "serial monitor timestamps": lambda p: serial_monitor(serial_log(p)),
    "CRLF": lambda p: p.replace("\n", "\r\n"),
    "CR only": lambda p: p.replace("\n", "\r"),
    "indented": lambda p: "\n".join("    " + line for line in p.splitlines()),
    "trailing spaces": lambda p: "\n".join(line + "  \t" for line in p.splitlines()),
    "prompt lines around": serial_log,
    "wrapped at 64": lambda p: rewrap(p, 64),
    "wrapped at 76": lambda p: rewrap(p, 76),
    "wrapped at 40": lambda p: rewrap(p, 40),
    "one long line": lambda p: rewrap(p, 10_000),
    "no final newline": lambda p: p.rstrip("\n"),
    "blank lines inside": lambda p: p.replace("\n", "\n\n"),
    "in double quotes": lambda p: '"' + p + '"',
    "C string literal per line": lambda p: "\n".join(f'"{line}\\n"' for line in p.splitlines()),
    "C string, one line": lambda p: 'const char csr[] = "' + p.replace("\n", "\\n") + '";',
    "C++ raw string": lambda p: 'const char csr[] = R"(' + p + ')";',
    "JSON value": lambda p: '{"csr": "' + p.replace("\n", "\\n") + '", "slot": 0}',
    "markers squashed onto one line": lambda p: " ".join(p.split()),
    "without BEGIN/END lines": lambda p: "\n".join(p.strip().splitlines()[1:-1]),
    "timestamps, no BEGIN/END": lambda p: serial_monitor("\n".join(p.strip().splitlines()[1:-1])),
}


@pytest.mark.parametrize("form", PASTES)
def test_accepts_the_ways_people_paste(chip: str, form: str) -> None:
    cleaned = clean_pem(PASTES[form](chip), "csr")
    assert CANONICAL.match(cleaned), cleaned
    assert body_of(cleaned) == body_of(chip)


def test_canonical_form_is_stable(chip: str) -> None:
    once = clean_pem(serial_monitor(chip), "csr")
    assert clean_pem(once, "csr") == once


def test_certificate_kind(ca, key) -> None:
    cert = ca.issue(key.public_key(), "device_01")
    pasted = serial_monitor("Here is your certificate:\n" + cert)
    cleaned = clean_pem(pasted, "certificate")
    assert cleaned.startswith("-----BEGIN CERTIFICATE-----\n")
    assert body_of(cleaned) == body_of(cert)


def test_decodes_to_der(chip: str) -> None:
    block = read_block(chip, "csr")
    assert block.der == base64.b64decode(body_of(chip))


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("", errors.NotPemError, "No certificate signing request (CSR) found"),
        ("hello, here is my CSR!", errors.NotPemError, "-----BEGIN CERTIFICATE REQUEST-----"),
        ("ECCX08 Serial Number = 0123C13DA283AFA5EE\n", errors.NotPemError, "copy the whole block"),
    ],
)
def test_refuses_text_without_pem(text: str, error: type, words: str) -> None:
    with pytest.raises(error, match=re.escape(words)):
        clean_pem(text, "csr")


def test_refuses_begin_without_end(chip: str) -> None:
    truncated = "\n".join(chip.splitlines()[:4])
    with pytest.raises(errors.TruncatedPemError, match="copy the whole block, including the END"):
        clean_pem(truncated, "csr")


def test_refuses_end_without_begin(chip: str) -> None:
    truncated = "\n".join(chip.splitlines()[2:])
    with pytest.raises(errors.TruncatedPemError, match="no BEGIN line"):
        clean_pem(truncated, "csr")


def test_refuses_two_blocks(chip: str) -> None:
    with pytest.raises(errors.MultiplePemError, match="2 PEM blocks"):
        clean_pem(chip + "\n" + csr_pem("other"), "csr")


def test_refuses_certificate_where_csr_expected(ca, key) -> None:
    cert = ca.issue(key.public_key(), "device_01")
    with pytest.raises(
        errors.WrongPemKindError, match="is a certificate, not a certificate signing"
    ):
        clean_pem(cert, "csr")


def test_refuses_csr_where_certificate_expected(chip: str) -> None:
    with pytest.raises(errors.WrongPemKindError, match="is a certificate signing request"):
        clean_pem(chip, "certificate")


def test_refuses_headerless_csr_where_certificate_expected(chip: str) -> None:
    with pytest.raises(errors.WrongPemKindError):
        clean_pem(body_of(chip), "certificate")


@pytest.mark.parametrize("alone", [True, False])
def test_refuses_private_key_and_warns(chip: str, alone: bool) -> None:
    text = private_key_pem() if alone else chip + private_key_pem()
    with pytest.raises(errors.PrivateKeyPastedError, match="Never paste or share a private key"):
        clean_pem(text, "csr")


def test_refuses_other_block_kinds() -> None:
    text = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYI\n-----END PUBLIC KEY-----\n"
    with pytest.raises(errors.WrongPemKindError, match="'PUBLIC KEY' block"):
        clean_pem(text, "csr")


def test_refuses_base64_that_does_not_decode(chip: str) -> None:
    lines = chip.splitlines()
    lines[2] = lines[2][:-3]  # three characters lost in the copy
    with pytest.raises(errors.Base64Error, match="not valid base64"):
        clean_pem("\n".join(lines), "csr")


def test_refuses_foreign_characters_inside_the_block(chip: str) -> None:
    lines = chip.splitlines()
    lines[2] = lines[2][:10] + "é" + lines[2][11:]
    with pytest.raises(errors.Base64Error, match="in the block has 'é'"):
        clean_pem("\n".join(lines), "csr")


def test_refuses_empty_block() -> None:
    with pytest.raises(errors.Base64Error, match="block is empty"):
        clean_pem("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----", "csr")


def test_every_refusal_is_a_kit_error() -> None:
    assert issubclass(errors.PemError, errors.KitError)
    for name in (
        "NotPem",
        "TruncatedPem",
        "MultiplePem",
        "WrongPemKind",
        "PrivateKeyPasted",
        "Base64",
    ):
        assert issubclass(getattr(errors, name + "Error"), errors.PemError)


def test_refuses_a_block_that_lost_a_whole_group(chip: str) -> None:
    lines = chip.splitlines()
    lines[2] = lines[2][:8] + lines[2][12:]  # four characters lost: still valid base64
    with pytest.raises(errors.CertificateError, match="not a whole certificate signing request"):
        clean_pem("\n".join(lines), "csr")
