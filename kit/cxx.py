"""C++ literals: write strings that compile to exactly the given bytes, and read them back.

`config.h` holds values a student typed (a WiFi name with quotes, a password with `??=`), so the
escaping must be exact: g++ in ISO mode still replaces trigraphs, octal escapes must not swallow
the next character, and non-ASCII text is written as its UTF-8 bytes.
"""

from __future__ import annotations

import re
from typing import cast

from kit.errors import ConfigError

_SIMPLE_ESCAPES = {
    "n": b"\n",
    "t": b"\t",
    "r": b"\r",
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "v": b"\v",
    "\\": b"\\",
    "'": b"'",
    '"': b'"',
    "?": b"?",
}


def string_literal(value: str) -> str:
    """A C++ string literal whose bytes are `value` encoded as UTF-8."""
    out = []
    for byte in value.encode("utf-8"):
        char = chr(byte)
        if char in '"\\?':
            # `?` is escaped so that `??=` and friends never become trigraphs.
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            # Always three octal digits, so a following digit is never read as part of it.
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def raw_string_literal(value: str, preferred: str = "PEM") -> str:
    """A C++11 raw string literal holding `value`, with a delimiter that cannot collide with it."""
    delimiter, n = preferred, 0
    while f'){delimiter}"' in value:
        n += 1
        delimiter = f"{preferred}{n}"
    return f'R"{delimiter}({value}){delimiter}"'


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<raw>(?:u8|u|U|L)?R"(?P<delim>[^()\\\s]{0,16})\((?P<rawbody>.*?)\)(?P=delim)")
  | (?P<string>(?:u8|u|U|L)?"(?P<body>(?:[^"\\\n]|\\.)*)")
  | (?P<char>'(?:[^'\\\n]|\\.)*')
  | (?P<number>0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def tokens(source: str) -> list[tuple[str, str | bytes | int]]:
    """The source as (kind, value) tokens: 'string' values are bytes, 'number' values ints."""
    out: list[tuple[str, str | bytes | int]] = []
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup
        if kind in ("space", "comment"):
            continue
        if match.group("raw") is not None:
            out.append(("string", match.group("rawbody").encode("utf-8")))
        elif match.group("string") is not None:
            out.append(("string", _unescape(match.group("body"))))
        elif match.group("number") is not None:
            out.append(("number", int(match.group("number").rstrip("uUlL"), 0)))
        elif match.group("name") is not None:
            out.append(("name", match.group("name")))
        else:
            out.append(("punct", match.group(0)))
    return out


def declarations(source: str) -> dict[str, bytes | int]:
    """Constants declared in a header: `const char NAME[] = "...";`, `const int NAME = 5;`,
    and `#define NAME "..."` or `#define NAME 5`, with adjacent string literals joined."""
    toks = tokens(source)
    found: dict[str, bytes | int] = {}
    i = 0
    while i < len(toks):
        kind, value = toks[i]
        if (kind, value) == ("punct", "#") and i + 2 < len(toks) and toks[i + 1][1] == "define":
            name, start = toks[i + 2][1], i + 3
        elif (kind, value) == ("punct", "=") and i >= 1:
            # NAME = ...  or  NAME [ ] = ...
            back = i - 1
            if toks[back] == ("punct", "]") and back >= 2 and toks[back - 1] == ("punct", "["):
                back -= 2
            name, start = toks[back][1], i + 1
            if toks[back][0] != "name":
                i += 1
                continue
        else:
            i += 1
            continue
        j = start
        if j < len(toks) and toks[j][0] == "string":
            joined = b""
            while j < len(toks) and toks[j][0] == "string":
                joined += toks[j][1]  # type: ignore[operator]
                j += 1
            found[str(name)] = joined
        elif j < len(toks) and toks[j][0] == "number":
            found[str(name)] = cast(int, toks[j][1])  # 'number' tokens are ints
            j += 1
        i = max(j, i + 1)
    return found


def _unescape(body: str) -> bytes:
    """The bytes an ordinary string literal's body (between the quotes) compiles to."""
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[nxt]
            i += 2
        elif nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1 :]).group(0)  # type: ignore[union-attr]
            out.append(int(digits, 8) & 0xFF)
            i += 1 + len(digits)
        elif nxt == "x":
            digits = re.match(r"[0-9a-fA-F]+", body[i + 2 :])
            if digits is None:
                raise ConfigError("config.h has a \\x escape with no hex digits after it.")
            out.append(int(digits.group(0), 16) & 0xFF)
            i += 2 + len(digits.group(0))
        elif nxt in "uU":
            size = 4 if nxt == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + size], 16)).encode("utf-8")
            i += 2 + size
        else:
            raise ConfigError(f"config.h has an unknown escape \\{nxt} in a string.")
    return bytes(out)
