"""Device names: one name serves as certificate CN, MQTT client id, AWS thing name and topic level.

The rules here are where those four meet: at most 64 characters (X.509), letters, digits, '-',
'_' and ':' (thing names; no '/', '+' or '#' in a topic level), and not a name the kit keeps
for its own identities. The chip writes the name as a PrintableString whatever it holds, so a
name may be valid here and still non-standard there; `DeviceName.note` says so.
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


_NAME_OK = re.compile(r"[A-Za-z0-9_:-]")
# Names the kit gives its own identities (observers, the class server); a device may not take one.
RESERVED_NAME_PREFIXES = ("kit-",)
_NAME_FIXES = {
    " ": "a space; use '-' or '_' instead",
    "/": "'/', which would split the MQTT topic things/<name>/...; use '-' instead",
    "+": "'+', an MQTT wildcard; use '-' instead",
    "#": "'#', an MQTT wildcard; use '-' instead",
    ".": "'.', which AWS thing names do not allow; use '-' instead",
}


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
            problem = f"{char!r}; use only letters, digits, '-', '_' and ':'"
        raise DeviceNameError(f"The device name '{name}' has {problem}.")
    if name.lower().startswith(RESERVED_NAME_PREFIXES):
        raise DeviceNameError(
            f"The device name '{name}' starts with '{name[:4]}', which the kit keeps for its own "
            "identities (the observer that watches every device). Choose another name, such as "
            "your initials and a number."
        )
    return DeviceName(name)
