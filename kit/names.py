"""Device names: one name serves as certificate CN, MQTT client id, AWS thing name and topic level.

The rules here are where those four meet, and a fifth: the name is also a folder,
KIT_HOME/devices/<name>, on the students' Windows, macOS and Linux laptops. So: at most 64
characters (X.509), letters, digits, '-' and '_' (thing names; no '/', '+' or '#' in a topic
level; no ':', which Windows refuses in a file name), not a name Windows keeps for a device (CON,
NUL, COM1 ...), and not a name the kit keeps for its own identities. The chip writes the name as
a PrintableString whatever it holds, so a name may be valid here and still non-standard there;
`DeviceName.note` says so.

`portable_name_problem` is the same folder rule for any name that becomes a folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kit.errors import DeviceNameError

# What X.680 allows in a PrintableString; the ECCX08 library writes other characters anyway.
PRINTABLE_STRING = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)


@dataclass(frozen=True)
class DeviceName:
    """A name that works as certificate CN, MQTT client id, AWS thing name and topic level."""

    name: str

    @property
    def nonstandard_characters(self) -> str:
        """Characters the chip will write into a PrintableString although that type forbids them."""
        return "".join(sorted(set(self.name) - PRINTABLE_STRING))

    @property
    def note(self) -> str:
        """A sentence about non-standard characters, or "" when there are none."""
        chars = self.nonstandard_characters
        if not chars:
            return ""
        return (
            f"'{self.name}' has {', '.join(repr(c) for c in chars)}: the chip writes it into a "
            "PrintableString, which does not allow that. AWS IoT, OpenSSL and this kit accept "
            "it; some strict tools do not."
        )

    def __str__(self) -> str:
        return self.name


_NAME_OK = re.compile(r"[A-Za-z0-9_-]")
# Names the kit gives its own identities (observers, the class server); a device may not take one.
RESERVED_NAME_PREFIXES = ("kit-",)
_NAME_FIXES = {
    " ": "a space; use '-' or '_' instead",
    "/": "'/', which would split the MQTT topic things/<name>/...; use '-' instead",
    "+": "'+', an MQTT wildcard; use '-' instead",
    "#": "'#', an MQTT wildcard; use '-' instead",
    ".": "'.', which AWS thing names do not allow; use '-' instead",
    ":": "':', which Windows does not allow in a folder name (each device has a folder); "
    "use '-' instead",
}

# Names Windows keeps for devices, in any case and with any extension (NUL.txt is NUL too);
# the superscript digits count as digits there. A file or folder cannot have one.
WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789\u00b9\u00b2\u00b3"]
)
# Characters Windows refuses in a file name (macOS refuses '/', and ':' in Finder).
_NOT_IN_FILE_NAMES = frozenset('<>:"/\\|?*')
# The longest file name Windows (NTFS), macOS (APFS) and Linux (ext4) all allow, in UTF-16
# units (NTFS), characters (APFS) and UTF-8 bytes (ext4): kept as bytes, the strictest.
NAME_LIMIT = 255


def windows_reserved(name: str) -> bool:
    """Whether Windows takes `name` for a device (CON, nul.txt, Com1 ...) rather than a file."""
    stem = name.split(".", 1)[0].rstrip(" ")
    return stem.upper() in WINDOWS_RESERVED


def portable_name_problem(name: str) -> str:
    """Why `name` cannot be a file or folder name on Windows, macOS or Linux; "" if it can."""
    if name in ("", ".", ".."):
        return "it is empty or a dot, which names no folder"
    if len(name.encode("utf-8")) > NAME_LIMIT:
        return f"it is longer than the {NAME_LIMIT} bytes a file name may have"
    for char in name:
        if char in _NOT_IN_FILE_NAMES:
            return f"Windows does not allow {char!r} in a file name"
        if ord(char) < 32:
            return "it has a control character (such as a tab or line break)"
    if name[-1] in ". ":
        return "Windows drops a dot or space at the end of a file name"
    if windows_reserved(name):
        return f"Windows keeps the name {name.split('.', 1)[0].rstrip(' ').upper()} for a device"
    return ""


def validate_device_name(name: str) -> DeviceName:
    """Check a device name (CN, client id, thing name, topic level) or raise DeviceNameError."""
    if not name:
        raise DeviceNameError(
            "The device name is empty. Type a name, or leave the question unanswered to keep "
            "the chip's serial number as the name."
        )
    if len(name) > 64:
        raise DeviceNameError(
            f"The device name has {len(name)} characters; at most 64 fit in a certificate. "
            "Choose a shorter name."
        )
    for char in name:
        if _NAME_OK.fullmatch(char):
            continue
        if char in _NAME_FIXES:
            problem = _NAME_FIXES[char]
        elif not char.isascii():
            problem = f"{char!r}, which is not a plain ASCII letter; use a-z, A-Z and 0-9"
        else:
            problem = f"{char!r}; use only letters, digits, '-' and '_'"
        raise DeviceNameError(f"The device name '{name}' has {problem}.")
    if name.lower().startswith(RESERVED_NAME_PREFIXES):
        raise DeviceNameError(
            f"The device name '{name}' starts with '{name[:4]}', which the kit keeps for its own "
            "identities (the observer that watches every device). Choose another name, such as "
            "your initials and a number."
        )
    if windows_reserved(name):
        raise DeviceNameError(
            f"The device name '{name}' is one Windows keeps for itself (like CON, NUL, COM1 and "
            "LPT1), so it cannot be a folder on a Windows laptop. Add to it, such as "
            f"'{name}-board', or choose another name."
        )
    return DeviceName(name)
