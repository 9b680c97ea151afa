"""How the local cloud's broker is run: where it listens, the name boards use, how long it keeps.

One value, `LocalOptions`, shared by `kit cloud up`, the service's own entry point
(`python -m kit.cloud.service`) and the in-process broker of tests and scripts, so each option
is declared once, with its command-line form.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from kit import arguments
from kit.cloud.policy import CONNECT_TIMEOUT, SESSION_EXPIRY
from kit.cloud.recorder import QUEUE_SIZE
from kit.ports import MQTT_TLS_PORT, WEBSOCKET_TLS_PORT

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class LocalOptions:
    """Where the broker listens (port 0: any free port) and what it promises its clients."""

    host: str = "127.0.0.1"
    port: int = MQTT_TLS_PORT
    ws_port: int = WEBSOCKET_TLS_PORT
    broker_host: str | None = None  # the DNS name boards use; None: chosen from `host`
    keep_days: float = 30
    connect_timeout: float = CONNECT_TIMEOUT
    session_expiry: float = SESSION_EXPIRY
    recorder_queue: int = QUEUE_SIZE

    @property
    def listening_ports(self) -> list[int]:
        """The fixed ports it will take (none for port 0)."""
        return [p for p in (self.port, self.ws_port) if p]

    def command_line(self) -> list[str]:
        """These options as arguments for `python -m kit.cloud.service`."""
        line = ["--host", self.host, "--port", str(self.port), "--ws-port", str(self.ws_port)]
        line += ["--keep-days", str(self.keep_days)]
        return line + (["--broker-host", self.broker_host] if self.broker_host else [])


def add_arguments(parser: argparse.ArgumentParser, *, listen_flag: bool = False) -> None:
    """The broker's options on a command line (`--listen` for people, `--host` for the service)."""
    parser.add_argument(
        "--port",
        type=arguments.port_or_any,
        default=MQTT_TLS_PORT,
        help=f"MQTT/TLS port (default {MQTT_TLS_PORT})",
    )
    parser.add_argument(
        "--ws-port",
        type=arguments.port_or_any,
        default=WEBSOCKET_TLS_PORT,
        help=f"WebSocket/TLS port (default {WEBSOCKET_TLS_PORT})",
    )
    parser.add_argument(
        "--keep-days",
        type=arguments.positive_number("days", "30", 100_000),
        default=30.0,
        help="how many days the recorder keeps messages (default 30)",
    )
    parser.add_argument(
        "--broker-host",
        type=arguments.host_name,
        help=(
            "the DNS name boards use (default: localhost, or this computer's .local name with "
            "--listen)"
        ),
    )
    # People say --listen; the service is told the exact address.
    parser.add_argument(
        "--host", default="127.0.0.1", help=argparse.SUPPRESS if listen_flag else "the address"
    )
    if listen_flag:
        parser.add_argument(
            "--listen",
            action="store_true",
            help="serve boards on the LAN too (listen on every address)",
        )


def from_arguments(args: argparse.Namespace) -> LocalOptions:
    """The options a command line parsed by `add_arguments` gave."""
    host = "0.0.0.0" if getattr(args, "listen", False) else args.host
    return LocalOptions(host, args.port, args.ws_port, args.broker_host, args.keep_days)
