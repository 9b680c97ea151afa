"""The paste cleaner on hostile input: linear time on every pathological shape, a size limit,
and only PemError (or a clean block) out of any paste at all."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest
from helpers import csr_pem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit import errors
from kit.pem import PASTE_LIMIT, clean_pem, read_block

# Shapes that made the old marker pattern backtrack (seconds for a few KB), and their relatives.
SHAPES: dict[str, Callable[[int], str]] = {
    "BEGIN then spaces": lambda n: "-----BEGIN" + " " * n,
    "one line of dashes": lambda n: "-" * n,
    "BEGIN, label, spaces": lambda n: "-----BEGIN CERTIFICATE" + " " * n + "x",
    "BEGIN, label of spaces and letters": lambda n: "-----BEGIN " + "A " * (n // 2),
    "dash runs and spaces": lambda n: "--- " * (n // 4),
    "BEGIN repeated": lambda n: "-----BEGIN " * (n // 11),
    "unclosed markers": lambda n: "-----BEGIN X-----\n" * (n // 18),
    "timestamps": lambda n: "12:00:00.000 -> " * (n // 16),
    "escaped newlines": lambda n: "\\n" * (n // 2),
    "base64 without markers": lambda n: "QUJD" * (n // 4),
    "decoration": lambda n: "\"',;()" * (n // 6),
}


def _seconds(paste: str) -> float:
    """The fastest of three runs of the cleaner on `paste` (it may refuse it: that is fine)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with contextlib.suppress(errors.KitError):
            clean_pem(paste, "csr")
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("shape", SHAPES)
def test_ten_times_the_paste_takes_about_ten_times_as_long(shape: str) -> None:
    # Measured against itself in one run, so a slow machine slows both sides alike.
    small, large = 5_000, 50_000
    assert large <= PASTE_LIMIT  # both sizes are cleaned, not refused by the size limit
    make = SHAPES[shape]
    short, long = _seconds(make(small)), _seconds(make(large))
    assert long <= 15 * short + 0.05, f"{shape}: {short:.4f} s for 5 KB but {long:.4f} s for 50 KB"


def test_a_paste_beyond_the_limit_is_refused_with_what_to_copy() -> None:
    start = time.perf_counter()
    with pytest.raises(errors.PasteTooLongError, match=r"100,000 characters.*-----BEGIN"):
        clean_pem("-" * 100_000, "csr")
    assert time.perf_counter() - start < 1  # refused before any work: no scan of the text


def test_a_real_paste_with_a_whole_serial_session_fits_the_limit() -> None:
    pem = csr_pem("device_01")
    session = "12:00:00.000 -> Hi! This is the CSR sketch, with much chatter around it.\n" * 400
    assert len(session + pem) < PASTE_LIMIT
    assert clean_pem(session + pem, "csr") == clean_pem(pem, "csr")


PEM = csr_pem("device_01")  # as the chip prints it: 76 columns
CANONICAL = clean_pem(PEM, "csr")

_PASTE_ALPHABET = st.sampled_from(
    [*list("-BEGINDCRTFQUSA ENDabc019+/=\n\r\t\"',;()\\:.>"), "-----", "BEGIN ", "END "]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PASTE_ALPHABET, max_size=200).map("".join) | st.text(max_size=400))
def test_any_paste_gives_a_block_or_a_paste_problem(paste: str) -> None:
    try:
        block = read_block(paste, "csr")
    except errors.KitError as error:
        assert isinstance(error, errors.PemError | errors.CertificateError)
        assert str(error).strip(), "an error without a message"
    else:
        assert block.kind == "csr"


@settings(max_examples=100, deadline=None)
@given(
    prefix=st.sampled_from(["", "12:00:00.000 -> ", "  ", '"', "\t"]),
    suffix=st.sampled_from(["", "\\n", '\\n"', " ", ",", '",']),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    chatter=st.text(alphabet="abc xyz?:!.", max_size=60),
)
def test_a_decorated_csr_comes_back_canonical(
    prefix: str, suffix: str, newline: str, chatter: str
) -> None:
    decorated = newline.join(f"{prefix}{line}{suffix}" for line in PEM.splitlines())
    assert clean_pem(f"{chatter}{newline}{decorated}{newline}{chatter}", "csr") == CANONICAL
