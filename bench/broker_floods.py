"""Benchmark: the local broker under floods of sockets that never finish TLS or never send CONNECT.

Starts the broker in its own process, then, several times in a row, opens N sockets at once: half
plain TCP that never start TLS, half TLS sessions (with a registered device's certificate) that
never send CONNECT. Prints one table: how many the broker closed, how long that took, and its
memory after each flood. Every socket must be closed within the connect timeout (10 s by default,
as the broker runs for a class) and the memory must not grow from one flood to the next.

    .venv/bin/python bench/broker_floods.py [--connections 500] [--floods 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from cloud_load import make_devices  # the benchmark beside this one: chip-like registrations

# Runs the broker in its own process; prints its port, stops when stdin closes.
RUNNER = """
import sys
from kit.cloud.local import LocalCloud
with LocalCloud(port=0, ws_port=0, connect_timeout=float(sys.argv[1])) as cloud:
    print(cloud.broker_port, flush=True)
    sys.stdin.read()
"""


def device_identity(folder: Path) -> tuple[Path, Path, Path]:
    """Register one device; return its certificate, key and the CA."""
    from kit.cloud.local import LocalCloud

    cloud = LocalCloud()
    [device], _ = make_devices(cloud, 1, folder)
    ca = folder / "ca.pem"
    ca.write_text(cloud.ca.pem)
    return Path(device["cert"]), Path(device["key"]), ca


def flood(port: int, count: int, context: ssl.SSLContext, limit: float) -> tuple[int, float]:
    """Open `count` silent sockets; return how many the broker closed and when the last went."""
    sockets: list[socket.socket] = []
    for index in range(count):
        plain = socket.create_connection(("127.0.0.1", port), timeout=10)
        if index % 2:
            plain = context.wrap_socket(plain, server_hostname="localhost")
        plain.setblocking(False)
        sockets.append(plain)
    started = time.monotonic()
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    closed, last = 0, 0.0
    while closed < count and time.monotonic() - started < limit:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            try:
                data = sock.recv(1024)  # type: ignore[union-attr]
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                closed += 1
                last = time.monotonic() - started
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return closed, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--floods", type=int, default=3)
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kit-bench-floods-"))
    os.environ["KIT_HOME"] = str(work / "home")
    cert, key, ca = device_identity(work)
    broker = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(args.connect_timeout)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(broker.stdout.readline())  # type: ignore[union-attr]
    process = psutil.Process(broker.pid)
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    rows = [{"flood": 0, "sockets": 0, "closed": 0, "seconds": 0.0, "rss_mb": _rss(process)}]
    try:
        for number in range(1, args.floods + 1):
            closed, seconds = flood(port, args.connections, context, args.connect_timeout + 10)
            time.sleep(0.5)
            rows.append(
                {
                    "flood": number,
                    "sockets": args.connections,
                    "closed": closed,
                    "seconds": round(seconds, 2),
                    "rss_mb": _rss(process),
                }
            )
    finally:
        broker.stdin.close()  # type: ignore[union-attr]
        broker.wait(30)
    if args.json:
        print(json.dumps(rows))
        return
    print(f"Silent sockets against the local broker (connect timeout {args.connect_timeout:g} s)")
    print(f"{'flood':>6} | {'sockets':>8} | {'closed':>8} | {'last closed s':>13} | {'RSS MB':>7}")
    print("-" * 56)
    for row in rows:
        print(
            f"{row['flood']:>6} | {row['sockets']:>8} | {row['closed']:>8} | "
            f"{row['seconds']:>13.2f} | {row['rss_mb']:>7.1f}"
        )


def _rss(process: psutil.Process) -> float:
    return round(process.memory_info().rss / 2**20, 1)


if __name__ == "__main__":
    main()
