"""Text from outside (certificate names, file names, board output) made safe to show.

A certificate's common name can hold a line break, which would forge an extra line in a
description, or an ANSI escape sequence, which a terminal would obey. Everything the kit shows in
a terminal or a notebook passes through `printable`, which writes such characters as visible
escapes (a line break becomes the two characters \\n).
"""

from __future__ import annotations

import re


def printable(text: str, keep: str = "") -> str:
    """`text` with every non-printable character (except those in `keep`) as a visible escape."""
    if text.isprintable():
        return text  # the common case, in one pass in C
    return "".join(char if char.isprintable() or char in keep else _escape(char) for char in text)


def _escape(char: str) -> str:
    """One character as Python writes it in a string literal: \\n, \\x1b, \\u202e."""
    return char.encode("unicode_escape").decode("ascii")


def mark_commands(text: str, before: str, after: str) -> str:
    """`text` with each `command` in backticks shown between `before` and `after` instead.

    Messages quote commands in backticks, as a terminal reader expects; a notebook shows them
    as code (HTML) or bold (a rendered error) rather than as literal backticks.
    """
    return re.sub(r"`([^`\n]+)`", lambda found: f"{before}{found.group(1)}{after}", text)
