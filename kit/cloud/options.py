"""How the local cloud's broker is run: where it listens, the name boards use, how long it keeps.

One value, `LocalOptions`, shared by `kit cloud up`, the service's own entry point
(`python -m kit.cloud.service`), the in-process broker of tests and scripts and the broker's own
settings (`BrokerSettings` extends it), so each option is declared once, here, with its
command-line form. The service's command line is written and read from the fields themselves
(`command_line`, `add_arguments`, `from_arguments`): a new field reaches the service, or the
parser refuses to be built.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any

from kit import arguments
from kit.cloud.policy import CONNECT_TIMEOUT, SESSION_EXPIRY
from kit.cloud.recorder import QUEUE_SIZE
from kit.ports import MQTT_TLS_PORT, WEBSOCKET_TLS_PORT

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DAY = 86_400.0  # seconds


def flag(parse: Callable[[str], Any], help: str, *, people: bool = True) -> Mapping[str, Any]:
    """A field's command-line form: how its text is read, and what `--help` says
    (`people=False`: the service's alone, not offered by `kit cloud up`)."""
    return {"parse": parse, "help": help, "people": people}


@dataclass(frozen=True)
class LocalOptions:
    """Where the broker listens (port 0: any free port) and what it promises its clients."""

    host: str = field(default="127.0.0.1", metadata=flag(str, "the address"))
    port: int = field(
        default=MQTT_TLS_PORT,
        metadata=flag(arguments.port_or_any, f"MQTT/TLS port (default {MQTT_TLS_PORT})"),
    )
    ws_port: int = field(
        default=WEBSOCKET_TLS_PORT,
        metadata=flag(arguments.port_or_any, f"WebSocket/TLS port (default {WEBSOCKET_TLS_PORT})"),
    )
    # The DNS name boards use; None: chosen from `host`.
    broker_host: str | None = field(
        default=None,
        metadata=flag(
            arguments.host_name,
            "the DNS name boards use (default: localhost, or this computer's .local name with "
            "--listen)",
        ),
    )
    keep_days: float = field(
        default=30,
        metadata=flag(
            arguments.positive_number("days", "30", 100_000),
            "how many days the recorder keeps messages (default 30)",
        ),
    )
    connect_timeout: float = field(
        default=CONNECT_TIMEOUT,
        metadata=flag(
            arguments.positive_number("seconds", "10", DAY),
            f"seconds a client has for TLS, then for CONNECT (default {CONNECT_TIMEOUT:g})",
            people=False,
        ),
    )
    session_expiry: float = field(
        default=SESSION_EXPIRY,
        metadata=flag(
            arguments.positive_number("seconds", "3600", 365 * DAY),
            f"seconds a persistent session outlives its connection (default {SESSION_EXPIRY:g})",
            people=False,
        ),
    )
    recorder_queue: int = field(
        default=QUEUE_SIZE,
        metadata=flag(
            arguments.whole_number(1, 999_999_999),
            f"messages the recorder queues for writing (default {QUEUE_SIZE})",
            people=False,
        ),
    )

    def __post_init__(self) -> None:
        if self.broker_host == "":  # an empty name is no name, as it always was
            object.__setattr__(self, "broker_host", None)

    @property
    def listening_ports(self) -> list[int]:
        """The fixed ports it will take (none for port 0)."""
        return [p for p in (self.port, self.ws_port) if p]

    def command_line(self) -> list[str]:
        """These options as arguments for `python -m kit.cloud.service`: every field that has
        a value, so the service runs with exactly these options."""
        line: list[str] = []
        for option in fields(LocalOptions):
            value = getattr(self, option.name)
            if value is not None:
                line += [option_flag(option), str(value)]
        return line


def option_flag(option: Field[Any]) -> str:
    """A field's flag: `ws_port` is `--ws-port`."""
    return "--" + option.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, *, listen_flag: bool = False) -> None:
    """Every option as a flag, for the service; with `listen_flag`, those for people (`kit
    cloud up`): `--listen` instead of `--host`, and the service's tuning left at its defaults."""
    for option in fields(LocalOptions):
        form = option.metadata  # a KeyError here: a new field without its `flag(...)`
        parse, help_text = form["parse"], form["help"]
        if listen_flag and not form["people"]:
            parser.set_defaults(**{option.name: option.default})
            continue
        if listen_flag and option.name == "host":  # people say --listen; the service, an address
            help_text = argparse.SUPPRESS
        parser.add_argument(option_flag(option), type=parse, default=option.default, help=help_text)
    if listen_flag:
        parser.add_argument(
            "--listen",
            action="store_true",
            help="serve boards on the LAN too (listen on every address)",
        )


def from_arguments(args: argparse.Namespace) -> LocalOptions:
    """The options a command line parsed by `add_arguments` gave."""
    values = {option.name: getattr(args, option.name) for option in fields(LocalOptions)}
    if getattr(args, "listen", False):
        values["host"] = "0.0.0.0"
    return LocalOptions(**values)
