"""Benchmark: the class's live stream, publish → event in a browser-like client.

A class of N students on the local cloud, served over HTTPS (`kit class serve`). Each student
logs in and registers a device with a key this script holds; N device clients (paho, TLS, their
own certificates) connect to the broker and each publishes one reading a second; N viewers
(one per student, each on its own HTTPS connection) follow their device's Server-Sent Events
stream. Every reading carries its number, so each event at a viewer is matched to the moment
its device published it. Prints publish → event p50/p99/max, events lost, and the class
server's and the broker's CPU and memory (sampled every 5 s: flat after warm-up?).

    .venv/bin/python bench/class_live.py [--students 30] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from classroom import ServedClass, cpu_seconds, memory, percentile, served_class
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kit.sim.eccx08_csr import chip_csr, chip_pem


class Student:
    """One student: a logged-in browser session, a device, and a viewer of its stream."""

    def __init__(self, served: ServedClass, index: int, folder: Path) -> None:
        self.thing = f"live_{index}"
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.received: set[int] = set()
        username, password = served.logins[index]
        self.client = httpx.Client(base_url=served.site, verify=False, timeout=60)
        token = re.search(r'name="login_csrf" value="([^"]+)"', self.client.get("/login").text)
        self.client.post(
            "/login",
            data={"username": username, "password": password, "login_csrf": token.group(1)},
        )
        key = ec.generate_private_key(ec.SECP256R1())
        csrf = re.search(r'name="csrf" value="([^"]+)"', self.client.get("/register").text)
        done = self.client.post(
            "/register",
            data={"csrf": csrf.group(1), "csr": chip_pem(chip_csr(key, {"CN": self.thing}))},
        )
        assert done.status_code == 200, done.text[:300]
        files = {
            name: folder / f"{self.thing}-{name}"
            for name in ("certificate.pem", "ca.pem", "key.pem")
        }
        for name in ("certificate.pem", "ca.pem"):
            files[name].write_text(self.client.get(f"/devices/{self.thing}/{name}").text)
        files["key.pem"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.thing)
        self.device.tls_set(
            ca_certs=str(files["ca.pem"]),
            certfile=str(files["certificate.pem"]),
            keyfile=str(files["key.pem"]),
        )
        self.device.connect("localhost", int(served.env["KIT_BROKER_PORT"]), keepalive=30)
        self.device.loop_start()
        self.last_id = self.client.get(f"/live/{self.thing}/story").json()["last_id"]

    def view(self, stop: threading.Event) -> None:
        """Follow the stream as a browser's EventSource does, until `stop`."""
        path = f"/live/{self.thing}/events?after={self.last_id}"
        with self.client.stream("GET", path, timeout=None) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event.get("kind") == "reading":
                        number = int(event["temperature"])
                        self.latencies.append(time.time() - self.sent[number])
                        self.received.add(number)
                if stop.is_set():
                    return

    def publish(self, number: int) -> None:
        payload = json.dumps({"temperature": number, "humidity": 40}, indent=2)
        self.sent[number] = time.time()
        self.device.publish(f"things/{self.thing}/environment", payload, qos=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    with served_class(args.students) as served:
        folder = Path(served.env["KIT_HOME"]) / "bench-devices"
        folder.mkdir()
        students = [Student(served, index, folder) for index in range(args.students)]
        stop = threading.Event()
        viewers = [threading.Thread(target=s.view, args=(stop,), daemon=True) for s in students]
        for viewer in viewers:
            viewer.start()
        time.sleep(2)  # every stream open
        pids = {"class server": served.server_pid, "broker": served.broker_pid}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        samples: list[float] = []
        begun = time.monotonic()
        for second in range(args.seconds):
            for student in students:  # spread over the second, as boards are
                student.publish(second)
                time.sleep(1 / len(students) / 1.05)
            if second % 5 == 0:
                samples.append(memory(served.server_pid)[0])
        time.sleep(3)  # the last events arrive
        elapsed = time.monotonic() - begun
        cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / elapsed for name, pid in pids.items()}
        memories = {name: memory(pid) for name, pid in pids.items()}
        stop.set()
        for student in students:
            student.device.disconnect()
            student.device.loop_stop()

    latencies = [value for s in students for value in s.latencies]
    expected = args.students * args.seconds
    lost = expected - sum(len(s.received) for s in students)
    cores = os.cpu_count()
    print(
        f"{args.students} devices at 1 message/s, {args.students} viewers, {args.seconds} s, "
        f"HTTPS, local cloud ({cores} cores)"
    )
    print(f"{'publish -> event at the viewer':<32}{'p50':>9}{'p99':>9}{'max':>9}")
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    print(f"{'':<32}{p50 * 1000:>7.0f}ms{p99 * 1000:>7.0f}ms{max(latencies) * 1000:>7.0f}ms")
    print(f"events: {expected} published, {len(latencies)} received, {lost} lost")
    for name in pids:
        resident, peak = memories[name]
        print(
            f"{name}: CPU {cpu[name] * 100:.0f}% of one core, memory {resident:.0f} MB "
            f"(peak {peak:.0f} MB)"
        )
    print("class server memory every 5 s (MB): " + " ".join(f"{m:.0f}" for m in samples))


if __name__ == "__main__":
    main()
