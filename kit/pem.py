"""Turn what a person pastes into one canonical PEM block.

People copy certificates out of the Arduino serial monitor (with `HH:MM:SS.mmm -> ` timestamps),
e-mails, web forms and C source files. This module finds the one block they meant and gives it
back as clean PEM, or says exactly what is wrong with the paste.
"""

from __future__ import annotations

import base64
import binascii
import re
import textwrap
from dataclasses import dataclass
from typing import Literal

from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509

from kit.errors import (
    Base64Error,
    CertificateError,
    KitError,
    MultiplePemError,
    NotPemError,
    PasteTooLongError,
    PrivateKeyPastedError,
    TruncatedPemError,
    WrongPemKindError,
)

Kind = Literal["csr", "certificate"]

LABELS: dict[str, str] = {"csr": "CERTIFICATE REQUEST", "certificate": "CERTIFICATE"}
NAMES: dict[str, str] = {"csr": "certificate signing request (CSR)", "certificate": "certificate"}
_LABEL_KIND: dict[str, Kind] = {
    "CERTIFICATE REQUEST": "csr",
    "NEW CERTIFICATE REQUEST": "csr",
    "CERTIFICATE": "certificate",
    "TRUSTED CERTIFICATE": "certificate",
    "X509 CERTIFICATE": "certificate",
}

# The Arduino IDE serial monitor's "Show timestamp" prefix.
_TIMESTAMP = re.compile(r"^\s*\d{1,2}:\d{2}:\d{2}\.\d{1,3}\s*->\s?")
# A marker is a run of dashes, BEGIN or END and a label, and another run of dashes. Markers are
# found by splitting at dash runs, not by one regular expression: a pattern with optional spaces
# on both sides of the label backtracks for seconds on a paste of spaces or dashes.
_DASHES = re.compile(r"-{3,}")
_LABEL_WORD = re.compile(r"[A-Z0-9]+")
# A real paste is a few KB (a serial-monitor copy with timestamps included); anything far bigger
# is the wrong file or the whole scroll-back, and is refused before any work is done on it.
PASTE_LIMIT = 64 * 1024
# Quotes, commas, semicolons, parentheses and backslashes that a C string literal or a quoted
# e-mail adds around each line of base64.
_DECORATION = "\"'`,;()\\ \t"
_BASE64_LINE = re.compile(r"^[A-Za-z0-9+/=]+$")


@dataclass(frozen=True)
class PemBlock:
    """One decoded block: its kind, its DER bytes and its canonical PEM text."""

    kind: Kind
    der: bytes

    @property
    def pem(self) -> str:
        """The block as canonical PEM: standard label, 64 columns, LF, final newline."""
        body = "\n".join(textwrap.wrap(base64.b64encode(self.der).decode("ascii"), 64))
        label = LABELS[self.kind]
        return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def clean_pem(text: str, kind: Kind) -> str:
    """Return the one `kind` block in pasted `text` as canonical PEM, or raise a PemError."""
    return read_block(text, kind).pem


def read_block(text: str, kind: Kind) -> PemBlock:
    """Find, check and decode the one `kind` block in pasted `text`."""
    if kind not in LABELS:
        raise ValueError(f"kind must be 'csr' or 'certificate', not {kind!r}")
    if len(text) > PASTE_LIMIT:
        raise PasteTooLongError(
            f"The text is {len(text):,} characters long, far more than a {NAMES[kind]} (about "
            "1,000). Copy only the block, from its -----BEGIN line to its -----END line."
        )
    lines = _plain_lines(text)
    markers = _find_markers(lines)
    if any("PRIVATE KEY" in m.label for m in markers):
        raise PrivateKeyPastedError(
            "That is a PRIVATE KEY. Never paste or share a private key: anyone who has it can "
            "pretend to be your device. Delete it from wherever you copied it to and paste the "
            f"{NAMES[kind]} instead."
        )
    if not markers:
        return _headerless_block(lines, kind)
    blocks = _pair_markers(markers)
    if len(blocks) > 1:
        kinds = ", ".join(NAMES.get(_LABEL_KIND.get(b.label, ""), b.label) for b, _ in blocks)
        raise MultiplePemError(
            f"The text holds {len(blocks)} PEM blocks ({kinds}) but one {NAMES[kind]} was "
            "expected. Paste only the block from its -----BEGIN line to its -----END line."
        )
    begin, end = blocks[0]
    label = begin.label
    unknown = WrongPemKindError(
        f"That is a '{label}' block, not a {NAMES[kind]}. Copy the block that starts with "
        f"-----BEGIN {LABELS[kind]}-----."
    )
    _expect(_LABEL_KIND.get(label), kind, unknown)
    return _checked(_decode_body(_between(lines, begin, end), kind), kind)


def _wrong_kind_message(found: str, expected: str) -> str:
    """Explain a CSR pasted where a certificate belongs, or the reverse."""
    if expected == "certificate":
        return (
            "That is a certificate signing request (CSR), not a certificate. The CSR is what "
            "your board made; the certificate is what the cloud sent back when you registered "
            "it. Paste the block that starts with -----BEGIN CERTIFICATE-----."
        )
    return (
        "That is a certificate, not a certificate signing request (CSR). The CSR is what your "
        "board printed on the serial monitor; paste the block that starts with "
        "-----BEGIN CERTIFICATE REQUEST-----."
    )


def _plain_lines(text: str) -> list[str]:
    """Split into lines, undoing line endings, escaped newlines and serial-monitor timestamps."""
    # A PEM copied out of a C or JSON string has literal \n escapes; base64 never has a backslash.
    text = text.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\\r", "\n")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [_TIMESTAMP.sub("", line) for line in text.split("\n")]


@dataclass(frozen=True)
class _Marker:
    which: str  # BEGIN or END
    label: str
    line: int
    start: int  # column where the marker starts
    end: int  # column just after it


def _find_markers(lines: list[str]) -> list[_Marker]:
    """Every BEGIN/END marker, in order, in time linear in the length of the text."""
    markers = []
    for index, line in enumerate(lines):
        runs = list(_DASHES.finditer(line)) if "---" in line else []
        left = 0
        while left + 1 < len(runs):
            opening, closing = runs[left], runs[left + 1]
            words = line[opening.end() : closing.start()].split()
            if (
                len(words) >= 2
                and words[0] in ("BEGIN", "END")
                and all(_LABEL_WORD.fullmatch(word) for word in words[1:])
            ):
                label = " ".join(words[1:])
                markers.append(_Marker(words[0], label, index, opening.start(), closing.end()))
                left += 2  # the closing dashes belong to this marker
            else:
                left += 1
    return markers


def _between(lines: list[str], begin: _Marker, end: _Marker) -> list[str]:
    """The text strictly between two markers, as lines."""
    if begin.line == end.line:
        return [lines[begin.line][begin.end : end.start]]
    inner = lines[begin.line + 1 : end.line]
    return [lines[begin.line][begin.end :], *inner, lines[end.line][: end.start]]


def _pair_markers(markers: list[_Marker]) -> list[tuple[_Marker, _Marker]]:
    """Pair each BEGIN marker with its END marker."""
    blocks = []
    opened: _Marker | None = None
    for marker in markers:
        label = marker.label
        if marker.which == "BEGIN":
            if opened is not None:
                raise TruncatedPemError(_truncated_end(opened.label))
            opened = marker
        elif opened is None:
            raise TruncatedPemError(
                f"The text has an -----END {label}----- line but no BEGIN line before it: the "
                "start of the block was not copied. Copy the whole block, from -----BEGIN to "
                "-----END."
            )
        elif label != opened.label:
            raise TruncatedPemError(
                f"The block starts as {opened.label} but ends as {label}: two pastes were "
                "mixed. Copy the whole block again in one piece."
            )
        else:
            blocks.append((opened, marker))
            opened = None
    if opened is not None:
        raise TruncatedPemError(_truncated_end(opened.label))
    return blocks


def _truncated_end(label: str) -> str:
    """Explain a BEGIN line whose END line is missing."""
    return (
        f"The -----BEGIN {label}----- line has no matching -----END {label}----- line: the copy "
        "stopped early. Scroll down in the serial monitor (or the page you copied from) and copy "
        "the whole block, including the END line."
    )


def _body_chunks(lines: list[str]) -> list[tuple[int, str]]:
    """The base64 text of each line (with its index), stripped of quotes and spaces."""
    chunks = []
    for index, raw in enumerate(lines):
        line = "".join(raw.strip(_DECORATION).split())
        if line:
            chunks.append((index, line))
    return chunks


def _decode_body(lines: list[str], kind: Kind) -> bytes:
    """Decode the base64 lines between a BEGIN and an END marker."""
    chunks = _body_chunks(lines)
    for _, chunk in chunks:
        if not _BASE64_LINE.match(chunk):
            bad = next(c for c in chunk if not re.match(r"[A-Za-z0-9+/=]", c))
            raise Base64Error(
                f"The line '{chunk[:16]}...' in the block has {bad!r}, which cannot appear in a "
                f"{NAMES[kind]}: something else got mixed into the copy. Copy the block again, "
                "from -----BEGIN to -----END, and paste nothing else into it."
            )
    return _b64decode("".join(chunk for _, chunk in chunks), kind)


def _b64decode(data: str, kind: Kind) -> bytes:
    """Strict base64 decoding with a message a person can act on."""
    if not data:
        raise Base64Error(
            f"The {NAMES[kind]} block is empty. Copy the lines between -----BEGIN and -----END too."
        )
    try:
        # Python's decoder forgives lost characters before '=' padding; a paste must not.
        if len(data) % 4 or not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", data):
            raise ValueError("length or padding")
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Base64Error(
            f"The text inside the {NAMES[kind]} block is not valid base64 ({len(data)} "
            "characters, some missing or extra). Part of it was lost or changed while copying: "
            "copy the whole block again."
        ) from None


def _headerless_block(lines: list[str], kind: Kind) -> PemBlock:
    """Accept a bare base64 body pasted without BEGIN/END lines, if it decodes to `kind`."""
    runs: list[list[str]] = [[]]
    for _, chunk in _body_chunks(lines):
        if _BASE64_LINE.match(chunk) and len(chunk) >= 16:
            runs[-1].append(chunk)
        elif runs[-1]:
            runs.append([])
    best = max(runs, key=lambda run: sum(map(len, run)))
    data = "".join(best)
    if len(data) < 64:
        raise NotPemError(
            f"No {NAMES[kind]} found in the text. It should start with "
            f"-----BEGIN {LABELS[kind]}----- and end with -----END {LABELS[kind]}-----: copy "
            "the whole block, including those two lines."
        )
    der = _b64decode(data, kind)
    unknown = NotPemError(
        f"The text has base64 in it but it is not a {NAMES[kind]}. Copy the whole block, "
        f"from -----BEGIN {LABELS[kind]}----- to -----END {LABELS[kind]}-----."
    )
    _expect(der_kind(der), kind, unknown)
    return PemBlock(kind, der)


def _expect(found: Kind | None, kind: Kind, unknown: KitError) -> None:
    """Raise `unknown` if nothing was recognised, or say which kind it is if not `kind`."""
    if found is None:
        raise unknown
    if found != kind:
        raise WrongPemKindError(_wrong_kind_message(found, kind))


def der_kind(der: bytes) -> Kind | None:
    """Whether DER bytes are a whole, well-formed CSR, certificate, or neither."""
    for kind, spec in (
        ("csr", asn1_csr.CertificationRequest),
        ("certificate", asn1_x509.Certificate),
    ):
        try:
            spec.load(der, strict=True).native  # noqa: B018 - .native forces a full parse
        except (ValueError, TypeError, KeyError, OverflowError):
            continue
        return kind  # type: ignore[return-value]
    return None


def _checked(der: bytes, kind: Kind) -> PemBlock:
    """The block, once its bytes are known to be a whole `kind`."""
    if der_kind(der) != kind:
        raise CertificateError(
            f"The text decodes, but it is not a whole {NAMES[kind]}: part of it is missing or "
            f"was changed while copying. Copy the whole block again, from -----BEGIN to -----END."
        )
    return PemBlock(kind, der)
