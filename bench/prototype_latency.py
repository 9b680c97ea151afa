"""Benchmark: from a virtual device's publish to the plot model, with 1, 30 and 300 devices.

Virtual devices run the AWS firmware, many per process (three device processes), against the
local cloud running as its own process. This process is the notebook: one Telemetry connection
watching every thing and one LivePlot per thing, redrawn ten times a second as the dashboard
does. A reading's latency is from the device's publish to the redraw that puts it in the plot
model. Also printed: this process's CPU and memory while the devices publish 1 message/s each.

    .venv/bin/python bench/prototype_latency.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

DEVICE_PROCESSES = 3


def run_devices(spec_file: str) -> None:
    """A device process: many virtual boards running the AWS firmware until stdin closes."""
    from kit import config_h
    from kit.sim.aws_firmware import AwsFirmware, FirmwareSettings
    from kit.sim.eccx08 import ChipTiming, VirtualEccx08

    spec = json.loads(Path(spec_file).read_text())
    firmwares = []
    for i, device in enumerate(spec["devices"]):
        config = config_h.parse(Path(device["config"]).read_text())
        chip = VirtualEccx08(Path(device["chip"]), ChipTiming.instant())
        settings = FirmwareSettings(interval=1.0, timestamp=True, seed=i)
        firmwares.append(AwsFirmware(config, chip, config.local_ca, lambda text: None, settings))
    for firmware in firmwares:
        firmware.start()
        time.sleep(0.005)  # spread the readings over the second, as real boards are
    print("ready", flush=True)
    sys.stdin.read()
    for firmware in firmwares:
        firmware.stop()


def make_devices(cloud, count: int, folder: Path) -> list[dict]:
    """Virtual chips with keys, registered, each with its config.h."""
    from kit import certs, config_h
    from kit.sim.eccx08 import ChipTiming, VirtualEccx08
    from kit.sim.eccx08_csr import chip_pem

    devices = []
    for i in range(count):
        chip = VirtualEccx08(folder / f"chip{i}", ChipTiming.instant())
        chip.write_configuration_and_lock()
        chip.generate_key(0)
        csr = certs.load_csr(chip_pem(chip.csr(0, {"CN": f"bench_{i:03}"})))
        registration = cloud.register(csr)
        text = config_h.render(
            "Class",
            "virtual-wifi",
            registration.broker_host,
            registration.certificate_pem,
            port=registration.broker_port,
            local_ca=registration.ca_pem,
        ).text
        config_file = folder / f"config{i}.h"
        config_file.write_text(text)
        devices.append(
            {"thing": registration.thing, "config": str(config_file), "chip": str(chip.folder)}
        )
    return devices


def measure(cloud, devices: list[dict], seconds: float, folder: Path) -> dict:
    """Start the device processes, watch and plot for `seconds`, return the numbers."""
    from kit import telemetry, widgets

    plots = {d["thing"]: widgets.LivePlot(window=600) for d in devices}
    sent: dict[tuple[str, float], float] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def on_event(event) -> None:
        if isinstance(event, telemetry.Reading):
            plots[event.thing].add(event)

    watch = telemetry.Telemetry(cloud.observer(), None, on_event=on_event, keep=1000)
    original = watch._on_message

    def on_message(client, userdata, message):  # remember each reading's publish time
        try:
            stamp = json.loads(message.payload)["sent"]
            with lock:
                sent[(message.topic.split("/")[1], time.time())] = stamp
        except (ValueError, KeyError):
            pass
        original(client, userdata, message)

    watch.client.on_message = on_message
    watch.start()
    processes = []
    for i in range(DEVICE_PROCESSES):
        part = devices[i::DEVICE_PROCESSES]
        if not part:
            continue
        spec = folder / f"devices{i}.json"
        spec.write_text(json.dumps({"devices": part}))
        process = subprocess.Popen(
            [sys.executable, __file__, "--devices", str(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        process.stdout.readline()  # ready
        processes.append(process)
    me = psutil.Process()
    pending_counts = {thing: 0 for thing in plots}
    warm_up = 5.0  # let every device connect (TLS handshakes) before measuring
    start = time.monotonic() + warm_up
    measuring = False
    cpu_before = me.cpu_times()
    rss = []
    while time.monotonic() - start < seconds:
        if not measuring and time.monotonic() >= start:
            measuring, latencies[:], cpu_before = True, [], me.cpu_times()
        tick = time.monotonic()
        now = time.time()
        for thing, plot in plots.items():
            if plot.redraw():
                # Each reading newly in the model gets its latency from its "sent" stamp.
                new = plot.points - pending_counts[thing] if plot.points < 600 else 1
                pending_counts[thing] = plot.points
                with lock:
                    stamps = sorted(v for (t, _), v in sent.items() if t == thing)[-max(new, 1) :]
                    for key in [k for k in sent if k[0] == thing]:
                        del sent[key]
                latencies.extend(now - s for s in stamps)
        if measuring:
            rss.append(me.memory_info().rss)
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    cpu_after = me.cpu_times()
    for process in processes:
        process.stdin.close()
        process.wait(timeout=60)
    watch.stop()
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    latencies.sort()
    return {
        "devices": len(devices),
        "readings": len(latencies),
        "p50": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else float("nan"),
        "cpu": 100 * cpu / seconds,
        "rss": max(rss) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--devices", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.devices:
        run_devices(args.devices)
        return
    work = Path(tempfile.mkdtemp(prefix="kit-bench-proto-"))
    os.environ["KIT_HOME"] = str(work / "home")
    from kit.cloud import local, service
    from kit.cloud.options import LocalOptions

    cloud = local.LocalCloud()
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    service.start_service(LocalOptions(port=ports[0], ws_port=ports[1]))
    devices = make_devices(cloud, 300, work)  # their config.h names the running broker's port
    rows = []
    try:
        for count in (1, 30, 300):
            rows.append(measure(local.LocalCloud(), devices[:count], args.seconds, work))
    finally:
        service.stop_service()
    print(
        f"Device publish -> plot model, {args.seconds:.0f} s a cell, 1 reading/s per device, "
        "plot redrawn 10 times a second"
    )
    header = ("devices", "readings", "p50 ms", "p99 ms", "plot CPU %", "plot RSS MiB")
    print(" | ".join(f"{h:>13}" for h in header))
    print("-" * 16 * len(header))
    for row in rows:
        print(
            " | ".join(
                [
                    f"{row['devices']:>13}",
                    f"{row['readings']:>13}",
                    f"{row['p50']:>13.1f}",
                    f"{row['p99']:>13.1f}",
                    f"{row['cpu']:>13.1f}",
                    f"{row['rss']:>13.0f}",
                ]
            )
        )


if __name__ == "__main__":
    main()
