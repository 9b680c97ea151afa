"""The virtual AWS firmware: sketches/AWS/AWS.ino's behaviour, on the virtual board.

It boots from a rendered config.h, proves its identity with its virtual chip's slot key and
the certificate (mutual TLS), publishes the environment JSON every interval at QoS 1, applies LED
commands and reports them on led/state, reconnects after the broker goes away, and writes the
sketch's log lines on its serial port. On request it misbehaves the way students' boards do.
"""

from __future__ import annotations

import os
import random
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kit.config_h import SketchConfig
from kit.sim.eccx08 import VirtualEccx08

Misbehaviour = Literal["wrong-client-id", "forbidden-topic", "not-json", "silent"]
MISBEHAVIOURS: tuple[Misbehaviour, ...] = (
    "wrong-client-id",
    "forbidden-topic",
    "not-json",
    "silent",
)
MQTT_REASONS = {
    2: "client id rejected",
    3: "server unavailable",
    5: (
        "not authorized (the kit's local broker: certificate not registered, or client id is "
        "not its name)"
    ),
}
# paho reports MQTT 3.1.1 CONNACK codes as MQTT 5 reason codes; the sketch prints the 3.1.1 ones.
MQTT311 = {132: 1, 133: 2, 136: 3, 134: 4, 135: 5}
# The most of an LED message the sketch keeps (its LED_MESSAGE_MAX): "100" with whitespace around
# it fits; a longer message is not a brightness, whatever it holds.
LED_MESSAGE_MAX = 8


@dataclass
class FirmwareSettings:
    """How the virtual firmware runs; the defaults are the sketch's."""

    interval: float = 10.0  # seconds between readings
    retry_delay: float = 5.0  # seconds between connection attempts
    misbehave: Misbehaviour | None = None
    seed: int = 1
    timestamp: bool = False  # add "sent" (Unix time) to each reading: for latency benchmarks


def led_message(payload: bytes | bytearray) -> tuple[int | None, str]:
    """What the sketch makes of a message on its LED topic: the brightness to apply (None to
    ignore it) and the serial line it prints. A brightness is a whole number 0-100, whitespace
    around it allowed; only a message of at most LED_MESSAGE_MAX bytes is looked into."""
    size = len(payload)
    if size <= LED_MESSAGE_MAX:
        text = payload.strip()  # the C locale's isspace(): space, \t, \n, \v, \f, \r
        if text.isdigit() and int(text) <= 100:  # bytes.isdigit(): ASCII digits only
            return int(text), f"LED: {int(text)}%"
    unit = "byte" if size == 1 else "bytes"
    return None, f"LED: ignored a message of {size} {unit} (a brightness is 0-100)"


class SensorWalk:
    """An SHT31 in a classroom: a slow, seeded random walk within indoor ranges."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.celsius = 21.5
        self.humidity = 43.0

    def read(self) -> tuple[float, int]:
        """(temperature in F with one decimal, humidity in % as a whole number)."""
        self.celsius = min(25.0, max(19.0, self.celsius + self.random.uniform(-0.15, 0.15)))
        self.humidity = min(60.0, max(30.0, self.humidity + self.random.uniform(-0.8, 0.8)))
        return round(self.celsius * 9 / 5 + 32, 1), int(self.humidity + 0.5)


class AwsFirmware:
    """One virtual board running the AWS sketch."""

    def __init__(
        self,
        config: SketchConfig,
        chip: VirtualEccx08,
        ca_pem: str,
        serial: Callable[[str], None],
        settings: FirmwareSettings | None = None,
    ) -> None:
        self.config, self.chip, self.ca_pem = config, chip, ca_pem
        self.settings = settings or FirmwareSettings()
        self._serial = serial
        self.led = 0
        self.published = 0  # readings handed to MQTT
        self.acknowledged = 0  # readings the broker acknowledged (PUBACK)
        self.not_sent = 0  # readings dropped because the broker was away, as the sketch does
        self._unacknowledged: set[int] = set()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._sensor = SensorWalk(self.settings.seed)
        name = config.device_name
        self.environment_topic = f"things/{name}/environment"
        self.led_topic = f"things/{name}/led"
        self.client_id = name + "-x" if self.settings.misbehave == "wrong-client-id" else name
        self._client: mqtt.Client | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"firmware-{name}")

    def println(self, line: str) -> None:
        self._serial(line + "\r\n")

    # setup()

    def start(self) -> AwsFirmware:
        self.println(f"WiFi: joining {self.config.ssid}")
        self.println("WiFi: connected")
        self.println("Time: waiting for the WiFi module's clock. ok")
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True
        )
        client.tls_set_context(self._tls_context())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_pre_connect = lambda c, u: self.println(
            f"MQTT: connecting to {self.config.broker}:{self.config.port} as {self.client_id}"
        )
        client.on_connect_fail = lambda c, u: self.println(
            "MQTT: failed, error -2 (connection refused: TLS failed, or nothing listens there); "
            f"retrying in {self.settings.retry_delay:g} s"
        )
        delay = max(1, round(self.settings.retry_delay))
        client.reconnect_delay_set(delay, delay)
        self._client = client
        client.connect_async(self.config.broker, self.config.port, keepalive=60)
        client.loop_start()  # connects, and reconnects whenever the connection drops
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self._thread.join(timeout=5)

    def _tls_context(self) -> ssl.SSLContext:
        """Mutual TLS: trust the broker's CA, prove ourselves with the slot key."""
        context = ssl.create_default_context(cadata=self.ca_pem)
        key = self.chip._private_key(self.config.slot)  # the chip signs; the key stays inside
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # ssl only loads keys from files: a 0600 file that exists for the instant of loading.
        folder = self.chip.folder
        with tempfile.NamedTemporaryFile("wb", dir=folder, suffix=".key", delete=False) as out:
            os.chmod(out.name, 0o600)
            out.write(pem)
        cert_file = folder / "device-certificate.pem"
        cert_file.write_text(self.config.certificate)
        try:
            context.load_cert_chain(str(cert_file), out.name)
        finally:
            Path(out.name).unlink()
        return context

    # loop()

    def _loop(self) -> None:
        """Take a reading every interval; paho's thread keeps the connection (and reconnects)."""
        assert self._client is not None
        next_reading = time.monotonic() + self.settings.interval
        while not self._stop.wait(max(0.0, next_reading - time.monotonic())):
            next_reading += self.settings.interval
            self._reading(self._client)

    def _reading(self, client: mqtt.Client) -> None:
        if self.settings.misbehave == "silent":
            return
        temperature, humidity = self._sensor.read()
        if not self.connected.is_set():
            self.not_sent += 1
            self.println(f"MQTT: not sent to {self.environment_topic} (not connected)")
            return
        topic = self.environment_topic
        payload = f'{{\n  "temperature": {temperature},\n  "humidity": {humidity}\n}}'
        if self.settings.timestamp:
            payload = payload[:-2] + f',\n  "sent": {time.time():.6f}\n}}'
        if self.settings.misbehave == "forbidden-topic":
            topic = "things/someone-else/environment"
        elif self.settings.misbehave == "not-json":
            payload = f"temperature={temperature} humidity={humidity}"
        info = client.publish(topic, payload, qos=1)
        self._unacknowledged.add(info.mid)
        self.published += 1
        self.println(f"Published {topic} temperature {temperature} humidity {humidity}")

    # Callbacks (paho's network thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            code = MQTT311.get(reason.value, reason.value)
            self.println(
                f"MQTT: failed, error {code} ({MQTT_REASONS.get(code, str(reason))}); "
                f"retrying in {self.settings.retry_delay:g} s"
            )
            return
        self.connected.set()
        self.println("MQTT: connected")
        client.subscribe(self.led_topic, qos=1)
        self.println(f"MQTT: subscribed to {self.led_topic}")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.connected.is_set():
            self.println(f"MQTT: connection lost ({reason}); reconnecting")
        self.connected.clear()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        if mid in self._unacknowledged:
            self._unacknowledged.discard(mid)
            self.acknowledged += 1

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic != self.led_topic:
            return
        brightness, line = led_message(message.payload)
        self.println(line)
        if brightness is None:
            return
        self.led = brightness
        client.publish(f"{self.led_topic}/state", str(brightness), qos=1)
