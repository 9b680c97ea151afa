"""The class site as a background process of its own (the instructor's notebook starts it):
python -m kit.classroom --folder FOLDER --port PORT [--broker-host NAME]."""

from __future__ import annotations

import argparse
from pathlib import Path

from kit import environment
from kit.classroom import server


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kit.classroom")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broker-host")
    parser.add_argument("--broker-port", type=int)
    parser.add_argument("--broker-ws-port", type=int)
    args = parser.parse_args()
    env = environment.Environment(broker_port=args.broker_port, broker_ws_port=args.broker_ws_port)
    cloud = server.open_class_cloud(args.folder, args.broker_host, env)
    print(cloud.ensure_running(progress=lambda line: print(line, flush=True)), flush=True)
    server.serve(args.folder, cloud, listen="0.0.0.0", port=args.port)


if __name__ == "__main__":
    main()
