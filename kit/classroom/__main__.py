"""The class site as a background process of its own (the instructor's notebook starts it):
python -m kit.classroom --folder FOLDER --port PORT [--broker-host NAME]."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from kit import background, environment, locks, logs
from kit.classroom import server, site_process
from kit.errors import KitError


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kit.classroom")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broker-host")
    parser.add_argument("--broker-port", type=int)
    parser.add_argument("--broker-ws-port", type=int)
    args = parser.parse_args()
    site = site_process(args.folder)
    lock = background.claim(site, wait=2.0)  # held while this process lives
    if lock is None:
        sys.exit(f"The class site already runs (process {locks.read_pid(site.lock)}).")
    background.interrupt_on_stop(site)  # uvicorn shuts down gracefully, as on Ctrl+C
    logs.log_to(args.folder / "serve.log")  # rotated by size: a flood cannot fill the disk
    # The port first: a taken one stops here with the kit's message, before the cloud starts.
    try:
        sockets = server.site_sockets("0.0.0.0", args.port)
    except KitError as error:
        sys.exit(str(error))  # the log's last line, which the notebook shows
    env = environment.Environment(broker_port=args.broker_port, broker_ws_port=args.broker_ws_port)
    cloud = server.open_class_cloud(args.folder, args.broker_host, env)
    print(cloud.ensure_running(progress=lambda line: print(line, flush=True)), flush=True)
    with background.serving(site, {"port": args.port}), contextlib.suppress(KeyboardInterrupt):
        server.serve(args.folder, cloud, listen="0.0.0.0", port=args.port, sockets=sockets)


if __name__ == "__main__":
    main()
