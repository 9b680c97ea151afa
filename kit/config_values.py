"""The values config.h holds, checked one by one: the WiFi name and password, the broker, the
key slot and the LED pin. Each check raises ConfigError with a message a student can act on, and
each works on its own (the notebook checks fields as they are typed)."""

from __future__ import annotations

import ipaddress
import re

from kit.errors import ConfigError
from kit.ports import MQTT_TLS_PORT, read_port

DEFAULT_PORT = MQTT_TLS_PORT
_AWS_HOST = re.compile(r"\.amazonaws\.com(\.cn)?$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def check_ssid(ssid: str) -> None:
    """A WiFi name of 1 to 32 bytes without NUL or line breaks, or raise ConfigError."""
    single_line("WiFi name", ssid)
    size = len(ssid.encode("utf-8"))
    if size == 0:
        raise ConfigError("The WiFi name (SSID) is empty. Type the name of the WiFi network.")
    if size > 32:
        raise ConfigError(
            f"The WiFi name is {size} bytes long; WiFi names have at most 32. Check it for "
            "extra text pasted with it."
        )


def check_password(password: str) -> None:
    """A WPA2 passphrase (8 to 63 characters), 64 hex digits, or empty for an open network."""
    single_line("WiFi password", password)
    size = len(password)  # characters: what the student counts, not UTF-8 bytes
    if size == 0:
        return
    if size == 64:
        if re.fullmatch(r"[0-9a-fA-F]{64}", password):
            return
        raise ConfigError(
            "A 64-character WiFi password must be a hex key (digits 0-9 and a-f only). Check "
            "it, or type the 8 to 63 character passphrase instead."
        )
    # WPA2 passphrases are printable ASCII (IEEE 802.11i): a tab, an accent or a euro sign
    # cannot be in one, so it is a typing or pasting slip.
    odd = next((c for c in password if not " " <= c <= "~"), None)
    if odd is not None:
        # Named by kind, never shown: the message may be on a projector.
        if odd == "\t":
            what = "a tab"
        elif odd.isprintable():
            what = "a character beyond plain ASCII (an accent, a curly quote, a € or similar)"
        else:
            what = "a control character (such as Esc)"
        raise ConfigError(
            f"The WiFi password has {what} in it; WPA2 passwords use only the letters, digits, "
            "spaces and symbols of an English keyboard. Check it, and type it instead of "
            "pasting it."
        )
    if not 8 <= size <= 63:
        raise ConfigError(
            f"The WiFi password has {size} characters; a WPA2 password has 8 to 63 (or is "
            "empty for an open network). Check it for a missing or extra character."
        )


def check_led_pin(pin: int) -> None:
    """A digital pin number the MKR WiFi 1010 / Nano 33 IoT has (0 to 21), or raise."""
    if not isinstance(pin, int) or isinstance(pin, bool) or not 0 <= pin <= 21:
        raise ConfigError(f"The LED pin must be a pin number from 0 to 21, not {pin!r}.")


def check_slot(slot: int) -> None:
    """A key slot from 0 to 4, or raise ConfigError."""
    if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot <= 4:
        raise ConfigError(f"The key slot must be 0, 1, 2, 3 or 4, not {slot!r}.")


def normalise_broker(broker: str, port: int | None, changes: list[str]) -> tuple[str, int]:
    """Turn a broker as pasted (URL, host:port, spaces, capitals) into a DNS name and port."""
    single_line("broker address", broker)
    text = broker.strip()
    if text != broker:
        changes.append("removed spaces around the broker address")
    scheme = _SCHEME.match(text)
    if scheme:
        text = text[scheme.end() :]
        changes.append(f"removed '{scheme.group(0)}' from the broker address")
    host_port, slash, path = text.partition("/")
    if slash and path.strip("/"):
        changes.append(f"removed the path '/{path}' from the broker address")
    elif slash:
        changes.append("removed the '/' at the end of the broker address")
    if "@" in host_port:
        raise ConfigError(
            "The broker address has a user name in it ('@'). Type only the host name, such as "
            "abc123-ats.iot.eu-west-1.amazonaws.com."
        )
    host = host_port
    if host_port.startswith("[") or host_port.count(":") > 1:
        raise ConfigError(_ip_message(host_port))
    if ":" in host_port:
        host, _, port_text = host_port.partition(":")
        url_port = read_port(port_text)
        if url_port is None:
            raise ConfigError(
                f"The broker's port ':{port_text}' is not a port number (1 to 65535, digits "
                "0-9). Copy the endpoint again, or leave the port out for 8883."
            )
        if port is not None and port != url_port:
            raise ConfigError(
                f"The broker address says port {url_port} but the port is set to {port}. "
                "Use one of them."
            )
        if port is None:
            changes.append(f"took port {url_port} from the broker address")
        port = url_port
    port = DEFAULT_PORT if port is None else port
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ConfigError(f"The broker port must be a number from 1 to 65535, not {port!r}.")
    if host.endswith("."):
        host = host.rstrip(".")
        changes.append("removed the '.' at the end of the broker name")
    if host != host.lower():
        host = host.lower()
        changes.append("wrote the broker name in lower case")
    _check_host(host)
    if _AWS_HOST.search(host) and port != DEFAULT_PORT:
        raise ConfigError(
            f"AWS IoT Core takes device certificates on port 8883 only for this board (it "
            f"cannot send the ALPN that port {port} needs). Use port 8883."
        )
    return host, port


def _check_host(host: str) -> None:
    """A DNS host name (not an IP address: the board's TLS matches names only)."""
    if not host:
        raise ConfigError(
            "The broker address is empty. Paste the endpoint the registration step gave you."
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise ConfigError(_ip_message(host))
    if len(host) > 253:
        raise ConfigError("The broker name is longer than the 253 characters a DNS name can have.")
    for label in host.split("."):
        if not _LABEL.match(label):
            bad = next((c for c in label if not re.match(r"[a-z0-9-]", c)), None)
            reason = (
                f"has {bad!r}, which a host name cannot contain"
                if bad
                else "has an empty part, a part over 63 characters, or a '-' at the start or end "
                "of a part"
            )
            raise ConfigError(
                f"The broker name '{host}' {reason}. Copy the endpoint again, for example "
                "abc123-ats.iot.eu-west-1.amazonaws.com."
            )
    if host.split(".")[-1].isdigit():
        raise ConfigError(_ip_message(host))


def _ip_message(host: str) -> str:
    return (
        f"The broker '{host}' is an IP address. The board's TLS library checks the broker's "
        "certificate by DNS name only, so it needs a name: for a broker on a laptop use its "
        "name, such as mylaptop.local."
    )


def single_line(what: str, value: str) -> None:
    """Text on one line, without NUL, or ConfigError (a C string in config.h holds one line)."""
    if not isinstance(value, str):
        raise ConfigError(f"The {what} must be text, not {type(value).__name__}.")
    for bad, said in (("\x00", "a NUL character"), ("\n", "a line break"), ("\r", "a line break")):
        if bad in value:
            raise ConfigError(
                f"The {what} has {said} in it, which config.h cannot hold. Type it again on "
                "one line."
            )
