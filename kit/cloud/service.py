"""`python -m kit.cloud.service`: the local cloud as a process of its own.

`kit cloud up`, `kit lab` and the setup notebook start it in the background through
`kit.cloud.local.start_service`; it runs the broker until SIGTERM or Ctrl+C.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kit import arguments
from kit.cloud import local
from kit.errors import KitError
from kit.ports import MQTT_TLS_PORT, WEBSOCKET_TLS_PORT


def main(argv: Sequence[str] | None = None) -> int:
    """Run the local cloud in the foreground; a KitError is one line on stderr."""
    parser = arguments.Parser(prog="python -m kit.cloud.service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=arguments.port_or_any, default=MQTT_TLS_PORT)
    parser.add_argument("--ws-port", type=arguments.port_or_any, default=WEBSOCKET_TLS_PORT)
    parser.add_argument("--broker-host", type=arguments.host_name, help="the name boards use")
    parser.add_argument(
        "--keep-days", type=arguments.positive_number("days", "30", 100_000), default=30.0
    )
    try:
        args = parser.parse_args(argv)
        local.run_service(args.host, args.port, args.ws_port, args.broker_host, args.keep_days)
    except KitError as error:
        print(f"{error.title}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
