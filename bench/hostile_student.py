"""Benchmark: one hostile student in a class of quiet ones.

A class on the local cloud, served over HTTPS (`kit class serve`). Each student registers a
device through the API with a key made here, and this process is that device over MQTT: it
answers LED commands as the sketch does. The quiet students loop, each on a thread: load a page
that hashes nothing (/login), set their own LED (POST /api/things/<thing>/led, timed until
their device has it), and every fifth round log in again (POST /api/token: argon2). Two phases
of the same length: quiet, then with one hostile student doing only what a student may:
flooding their own device's topic with 128 KB payloads that are not JSON, their own LED with
commands, and the token endpoint with wrong passwords from ten addresses (127.0.0.2 to .11).

Prints, per phase, p50/p99/max of the page, the login and the LED command, the quiet students'
failures, and the class server's and the broker's memory and cloud.db's size after it.

    .venv/bin/python bench/hostile_student.py [--students 30] [--seconds 20]
"""

from __future__ import annotations

import argparse
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from classroom import memory, percentile, served_class
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kit.sim.eccx08_csr import chip_csr, chip_pem

FLOOD_PAYLOAD = b"\x00not json " * (128 * 1024 // 10)
WRONG_FROM = [f"127.0.0.{n}" for n in range(2, 12)]
LOGIN_EVERY = 5  # a quiet student's loop logs in once in this many rounds


@dataclass
class Device:
    """A student's device, played here over MQTT: it applies LED commands as the sketch does."""

    thing: str
    client: mqtt.Client
    applied: dict[int, float] = field(default_factory=dict)  # LED value -> when it arrived


@dataclass
class Phase:
    page: list[float] = field(default_factory=list)
    login: list[float] = field(default_factory=list)
    led: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def register(site: str, username: str, password: str, folder: Path) -> tuple[str, Device]:
    """Log in for a token, register a device, connect as it; return (token, device)."""
    with httpx.Client(base_url=site, verify=False, timeout=60) as client:
        token = client.post("/api/token", json={"username": username, "password": password})
        token.raise_for_status()
        bearer = token.json()["token"]
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"{username.replace('.', '_')}_bench"
        made = client.post(
            "/api/things",
            json={"csr": chip_pem(chip_csr(key, {"CN": name})), "slot": 0},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        made.raise_for_status()
    answer = made.json()
    files = {
        "cert": answer["certificate_pem"],
        "ca": answer["ca_pem"],
        "key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }
    for kind, text in files.items():
        (folder / f"{name}.{kind}").write_text(text)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=answer["thing"])
    context = ssl.create_default_context(cafile=str(folder / f"{name}.ca"))
    context.check_hostname = False  # the broker's name for boards may not be "127.0.0.1"
    context.load_cert_chain(str(folder / f"{name}.cert"), str(folder / f"{name}.key"))
    client.tls_set_context(context)
    device = Device(answer["thing"], client)
    led_topic = f"things/{device.thing}/led"

    def on_message(_client: mqtt.Client, _data: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == led_topic:
            value = int(message.payload)
            device.applied.setdefault(value, time.monotonic())
            client.publish(f"{led_topic}/state", str(value), qos=1)

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(led_topic, qos=1)
    client.connect("127.0.0.1", answer["broker_port"])
    client.loop_start()
    return bearer, device


def quiet_student(
    site: str, login: tuple[str, str], token: str, device: Device, until: float, out: Phase
) -> None:
    """Page, login, LED, again and again until `until`."""
    headers = {"Authorization": f"Bearer {token}"}
    value = int(login[0].encode().hex(), 16) % LOGIN_EVERY  # students log in at different times
    relogin = True  # a phase starts with a login, as a notebook opened again does
    with httpx.Client(base_url=site, verify=False, timeout=60) as client:
        while time.monotonic() < until:
            try:
                begun = time.monotonic()
                client.get("/login").raise_for_status()
                out.page.append(time.monotonic() - begun)
                if relogin or value % LOGIN_EVERY == 0:  # now and then, not each second
                    begun = time.monotonic()
                    answer = client.post(
                        "/api/token", json={"username": login[0], "password": login[1]}
                    )
                    out.login.append(time.monotonic() - begun)
                    relogin = answer.status_code != 200  # "busy": again next round
                    if answer.status_code == 200:  # the newest token: older ones may be ended
                        headers = {"Authorization": f"Bearer {answer.json()['token']}"}
                    else:
                        out.failures.append(f"login {answer.status_code}")
                value = (value + 1) % 101
                device.applied.pop(value, None)
                begun = time.monotonic()
                sent = client.post(
                    f"/api/things/{device.thing}/led", json={"value": value}, headers=headers
                )
                if sent.status_code != 202:
                    out.failures.append(f"LED {sent.status_code}")
                    continue
                while value not in device.applied and time.monotonic() < begun + 30:
                    time.sleep(0.01)
                if value in device.applied:
                    out.led.append(device.applied[value] - begun)
                else:
                    out.failures.append("LED not applied within 30 s")
            except httpx.HTTPError as error:
                out.failures.append(type(error).__name__)
            time.sleep(0.5)


def hostile(
    site: str, login: tuple[str, str], token: str, device: Device, until: float
) -> list[threading.Thread]:
    """Flood payloads, LED commands and wrong passwords until `until`; the threads doing it."""

    def payloads() -> None:
        while time.monotonic() < until:
            device.client.publish(f"things/{device.thing}/environment", FLOOD_PAYLOAD)
            time.sleep(1 / 90)

    def leds() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=site, verify=False, timeout=60) as client:
            number = 0
            while time.monotonic() < until:
                number += 1
                client.post(
                    f"/api/things/{device.thing}/led", json={"value": number % 101}, headers=headers
                )

    def wrong_passwords(address: str) -> None:
        transport = httpx.HTTPTransport(local_address=address, verify=False)
        with httpx.Client(base_url=site, transport=transport, timeout=60) as client:
            while time.monotonic() < until:
                client.post("/api/token", json={"username": login[0], "password": "wrong-guess"})

    threads = [threading.Thread(target=payloads), threading.Thread(target=leds)]
    threads += [threading.Thread(target=wrong_passwords, args=(a,)) for a in WRONG_FROM]
    for thread in threads:
        thread.start()
    return threads


def run_phase(site, logins, tokens, devices, seconds, hostile_on) -> Phase:
    """The quiet students for `seconds`, with the hostile one (index 0) when `hostile_on`."""
    phase = Phase()
    until = time.monotonic() + seconds
    attackers = hostile(site, logins[0], tokens[0], devices[0], until) if hostile_on else []
    quiet = [
        threading.Thread(
            target=quiet_student, args=(site, logins[i], tokens[i], devices[i], until, phase)
        )
        for i in range(1, len(logins))
    ]
    for thread in quiet:
        thread.start()
    for thread in quiet + attackers:
        thread.join()
    return phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=30, help="quiet students")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kit-hostile-"))
    with served_class(args.students + 1) as served:
        site, logins = served.site, served.logins
        registered = [register(site, user, password, folder) for user, password in logins]
        tokens, devices = [t for t, _ in registered], [d for _, d in registered]
        time.sleep(2)  # every device subscribed
        database = Path(served.env["KIT_HOME"]) / "cloud" / "cloud.db"
        rows = []
        for label, hostile_on in (("quiet class", False), ("one hostile student", True)):
            phase = run_phase(site, logins, tokens, devices, args.seconds, hostile_on)
            server, broker = memory(served.server_pid)[0], memory(served.broker_pid)[0]
            size = database.stat().st_size / 1e6 if database.exists() else 0.0
            rows.append((label, phase, server, broker, size))
        for device in devices:
            device.client.disconnect()
            device.client.loop_stop()

    print(f"{args.students} quiet students, {args.seconds:.0f} s a phase, class site over HTTPS")
    print(f"{'':<34}{'p50':>9}{'p99':>9}{'max':>9}{'count':>8}")
    for label, phase, server, broker, size in rows:
        print(label)
        for name, values in (
            ("page (/login)", phase.page),
            ("login (argon2)", phase.login),
            ("LED command, until applied", phase.led),
        ):
            if values:
                p50, p99 = sorted(values)[len(values) // 2], percentile(values, 0.99)
                print(f"  {name:<32}{p50:>8.2f}s{p99:>8.2f}s{max(values):>8.2f}s{len(values):>8}")
            else:
                print(f"  {name:<32}{'none':>9}")
        failures = {f: phase.failures.count(f) for f in set(phase.failures)}
        print(f"  quiet students' failures: {failures or 'none'}")
        print(f"  memory: class server {server:.0f} MB, broker {broker:.0f} MB", end="")
        print(f"; cloud.db {size:.0f} MB")


if __name__ == "__main__":
    main()
