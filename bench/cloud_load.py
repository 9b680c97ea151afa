"""Benchmark: the local cloud under a classroom's load, side by side with Mosquitto.

Prints, for the local cloud and Mosquitto side by side:
- registrations per second on the local cloud;
- publish-to-recorded latency (p50/p99) for 30 and 300 devices at 1 message/s each, with TLS,
  the device policy and the recorder on;
- the broker's CPU per 1,000 messages at a fixed 1,200 msg/s (300 devices at 4 msg/s);
- the highest sustained rate: the rate rises step by step until a broker loses a QoS 1
  message, falls below 90 % of the rate asked, or records 1 % of messages more than 1 s late.
Mosquitto (Debian's package) is configured as closely as it allows: TLS with client
certificates, use_identity_as_username, a pattern ACL on things/%u/#, and a subscriber
recording to SQLite. The load generator runs in processes of its own on the same two cores.

    .venv/bin/python bench/cloud_load.py [--seconds 35] [--skip-mosquitto]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

GENERATORS = 4


# The load generator (runs in its own processes)


def generate(spec_file: str) -> None:
    """Connect the devices in the spec, publish at the rate asked, report what was acknowledged."""
    spec = json.loads(Path(spec_file).read_text())
    clients, acked, published = [], [0], [0]
    lock = threading.Lock()
    for device in spec["devices"]:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device["name"])
        client.tls_set(ca_certs=spec["ca"], certfile=device["cert"], keyfile=device["key"])
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)

        def on_publish(c, u, mid, rc, props):
            with lock:
                acked[0] += 1

        client.on_publish = on_publish
        client.connect(spec["host"], spec["port"], keepalive=60)
        client.loop_start()
        clients.append((device["name"], client))
    time.sleep(2)  # all connected
    start = time.monotonic()
    cpu_start = time.process_time()
    interval = 1.0 / spec["rate"]
    sequence = 0
    next_round = start
    while time.monotonic() - start < spec["seconds"]:
        for name, client in clients:
            body = {"temperature": 70.0, "humidity": 40, "sent": time.time(), "seq": sequence}
            client.publish(f"things/{name}/environment", json.dumps(body), qos=1)
            with lock:
                published[0] += 1
        sequence += 1
        next_round += interval
        time.sleep(max(0.0, next_round - time.monotonic()))
    deadline = time.monotonic() + 15
    while acked[0] < published[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    cpu = time.process_time() - cpu_start
    for _, client in clients:
        client.disconnect()
        client.loop_stop()
    print(json.dumps({"published": published[0], "acked": acked[0], "cpu": cpu}))


def run_load(
    devices: list[dict], host: str, port: int, ca: str, rate: float, seconds: float, folder: Path
) -> dict:
    """Run the generator processes; return totals."""
    parts = [devices[i::GENERATORS] for i in range(GENERATORS)]
    processes = []
    for i, part in enumerate(p for p in parts if p):
        spec = folder / f"spec{i}.json"
        spec.write_text(
            json.dumps(
                {
                    "devices": part,
                    "host": host,
                    "port": port,
                    "ca": ca,
                    "rate": rate,
                    "seconds": seconds,
                }
            )
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "--generate", str(spec)],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    totals = {"published": 0, "acked": 0, "cpu": 0.0}
    for process in processes:
        out, _ = process.communicate(timeout=seconds + 120)
        result = json.loads(out.strip().splitlines()[-1])
        for key in totals:
            totals[key] += result[key]
    return totals


# Measuring


def latencies(database: Path, since: float) -> list[float]:
    """Seconds from publish (in the payload) to recorded, for messages recorded after `since`."""
    db = sqlite3.connect(database)
    rows = db.execute(
        "SELECT payload, received FROM messages WHERE received >= ?", (since,)
    ).fetchall()
    db.close()
    return [received - json.loads(payload)["sent"] for payload, received in rows]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


# The local cloud


def make_devices(cloud, count: int, folder: Path) -> tuple[list[dict], float]:
    """Register `count` chip-like devices; return their files and registrations per second."""
    from kit import certs
    from kit.sim.eccx08_csr import chip_csr, chip_pem

    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(count)]
    csrs = [
        certs.load_csr(chip_pem(chip_csr(k, {"CN": f"bench_{i:04}"}))) for i, k in enumerate(keys)
    ]
    start = time.perf_counter()
    registrations = [cloud.register(csr) for csr in csrs]
    rate = count / (time.perf_counter() - start)
    devices = []
    for key, registration in zip(keys, registrations, strict=True):
        key_file = folder / f"{registration.thing}.key"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cert_file = folder / f"{registration.thing}.pem"
        cert_file.write_text(registration.certificate_pem)
        devices.append({"name": registration.thing, "key": str(key_file), "cert": str(cert_file)})
    return devices, rate


def measure_cell(devices, host, port, ca, rate, seconds, folder, broker_pid, database) -> dict:
    since = time.time()
    cpu_before = cpu_seconds(broker_pid)
    totals = run_load(devices, host, port, ca, rate, seconds, folder)
    time.sleep(2)
    lat = latencies(database, since)
    return {
        "devices": len(devices),
        "rate": rate * len(devices),
        "achieved": totals["published"] / seconds,
        "published": totals["published"],
        "acked": totals["acked"],
        "recorded": len(lat),
        "p50": percentile(lat, 0.5) * 1000,
        "p99": percentile(lat, 0.99) * 1000,
        "broker_cpu": cpu_seconds(broker_pid) - cpu_before,
        "load_cpu": totals["cpu"],
    }


FIXED_RATE = 4.0  # messages/s per device: 300 devices x 4 = 1,200 msg/s
RAMP = (2, 4, 6, 8, 10, 12, 14, 16, 20, 24)  # messages/s per device, 300 devices


def measure_broker(name, devices, port, ca, seconds, folder, broker_pid, database):
    """Latency cells (30 and 300 devices at 1 msg/s), CPU at 1,200 msg/s, then a ramp that
    raises the rate until the broker loses a message or falls behind."""
    rows = []
    for count in (30, 300):
        cell = measure_cell(
            devices[:count], "localhost", port, ca, 1.0, seconds, folder, broker_pid, database
        )
        rows.append((name, cell))
    fixed = measure_cell(
        devices[:300], "localhost", port, ca, FIXED_RATE, 10, folder, broker_pid, database
    )
    best, ramp = 0.0, []
    for rate in RAMP:
        cell = measure_cell(
            devices[:300], "localhost", port, ca, rate, 8, folder, broker_pid, database
        )
        ramp.append(cell)
        print(f"  {name}: {cell['achieved']:.0f} msg/s sustained={sustained(cell)}", flush=True)
        if not sustained(cell):
            break
        best = cell["achieved"]
    return rows, fixed, best, ramp


def sustained(cell: dict) -> bool:
    """Every message acknowledged and recorded, at (nearly) the rate asked, without falling
    behind (99 % recorded within a second of being sent)."""
    lossless = cell["acked"] == cell["published"] == cell["recorded"]
    return lossless and cell["achieved"] >= 0.9 * cell["rate"] and cell["p99"] < 1000


# Mosquitto, configured as closely as it allows


def start_mosquitto(folder: Path, ca: str, cert: str, key: str, port: int) -> subprocess.Popen:
    (folder / "acl").write_text(
        "user kit-observer\ntopic read things/#\n\npattern readwrite things/%u/#\n"
    )
    (folder / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        f"acl_file {folder / 'acl'}\nmax_inflight_messages 1000\nmax_queued_messages 100000\n"
        "persistence false\nlog_type error\n" + ("user root\n" if os.geteuid() == 0 else "")
        # Started as root, Mosquitto would switch to its own user, who cannot read our files.
    )
    process = subprocess.Popen(["mosquitto", "-c", str(folder / "mosquitto.conf")])
    time.sleep(1)
    return process


def mosquitto_recorder(host, port, ca, observer_cert, observer_key, database: Path, stop) -> None:
    """A subscriber that records what Mosquitto delivers, as the local cloud's recorder does."""
    db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS messages (thing TEXT, topic TEXT, payload BLOB, received REAL)"
    )
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kit-observer-recorder")
    client.tls_set(ca_certs=ca, certfile=observer_cert, keyfile=observer_key)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("things/+/environment", qos=1)
    client.on_message = lambda c, u, m: db.execute(
        "INSERT INTO messages VALUES (?, ?, ?, ?)",
        (m.topic.split("/")[1], m.topic, m.payload, time.time()),
    )
    client.connect(host, port)
    client.loop_start()
    stop.wait()
    client.loop_stop()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=35)
    parser.add_argument("--skip-mosquitto", action="store_true")
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate)
        return

    work = Path(tempfile.mkdtemp(prefix="kit-bench-cloud-"))
    os.environ["KIT_HOME"] = str(work / "home")
    from kit.cloud import local, local_broker, service
    from kit.cloud.options import LocalOptions

    cloud = local.LocalCloud()
    devices, registrations_per_second = make_devices(cloud, 300, work)
    state = service.start_service(LocalOptions(port=_free(), ws_port=_free()))
    database = local.cloud_dir() / "cloud.db"
    ca = str(cloud.ca.folder / "ca.pem")
    results = {}
    try:
        results["local cloud"] = measure_broker(
            "local cloud", devices, state.port, ca, args.seconds, work, state.pid, database
        )
    finally:
        service.stop_service()
    if not args.skip_mosquitto and shutil.which("mosquitto"):
        cert_file, key_file = cloud.ca.server_identity(local_broker.host_names())
        observer_cert, observer_key = cloud.ca.observer_identity()
        port = _free()
        broker = start_mosquitto(work, ca, str(cert_file), str(key_file), port)
        database = work / "mosquitto.db"
        stop = threading.Event()
        recorder = threading.Thread(
            target=mosquitto_recorder,
            args=("localhost", port, ca, str(observer_cert), str(observer_key), database, stop),
            daemon=True,
        )
        recorder.start()
        time.sleep(1)
        try:
            results["Mosquitto + recorder"] = measure_broker(
                "Mosquitto + recorder", devices, port, ca, args.seconds, work, broker.pid, database
            )
        finally:
            stop.set()
            broker.terminate()
    report(results, registrations_per_second)


def report(results: dict, registrations_per_second: float) -> None:
    """Print the table: latency cells, CPU per 1,000 messages at 1,200 msg/s, highest rate."""
    print(
        f"Registrations per second on the local cloud: {registrations_per_second:.0f} "
        "(300 chip-like CSRs, one after another)"
    )
    print()
    header = ("broker", "devices", "msg/s sent", "recorded", "p50 ms", "p99 ms", "broker CPU s")
    print(" | ".join(f"{h:>20}" if i == 0 else f"{h:>12}" for i, h in enumerate(header)))
    print("-" * 110)
    for name, (rows, fixed, _, _) in results.items():
        for _, cell in [*rows, (name, fixed)]:
            print(
                " | ".join(
                    [
                        f"{name:>20}",
                        f"{cell['devices']:>12}",
                        f"{cell['achieved']:>12.0f}",
                        f"{cell['recorded']:>5} of {cell['published']:<5}",
                        f"{cell['p50']:>12.1f}",
                        f"{cell['p99']:>12.1f}",
                        f"{cell['broker_cpu']:>12.1f}",
                    ]
                )
            )
    print()
    print(
        f"{'':>20} | {'CPU s per 1,000 msg at 1,200 msg/s':>36} | {'highest sustained msg/s':>24}"
    )
    print("-" * 88)
    per_thousand = {}
    for name, (_, fixed, best, ramp) in results.items():
        per_thousand[name] = fixed["broker_cpu"] / max(fixed["published"], 1) * 1000
        topped = len(ramp) == len(RAMP) and sustained(ramp[-1])
        limit = " (the ramp's top)" if topped else " (next step failed)"
        print(f"{name:>20} | {per_thousand[name]:>36.3f} | {best:>12.0f}{limit:>12}")
    if len(per_thousand) == 2:
        local_cpu, mosquitto_cpu = per_thousand.values()
        print(f"\nBroker CPU per message, local / Mosquitto: x{local_cpu / mosquitto_cpu:.1f}")


def _free() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    main()
