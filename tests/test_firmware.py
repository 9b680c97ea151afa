"""The virtual AWS firmware's behaviour and misbehaviour, and the watch/led commands."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import registered_config, wait_until

from kit import board, config_h, telemetry
from kit.cloud.local import LocalCloud
from kit.sim import board as vboard
from kit.sim.aws_firmware import FirmwareSettings, SensorWalk
from kit.sim.csr_sketch import SketchSettings
from kit.sim.eccx08 import ChipTiming


@pytest.fixture
def cloud():
    with LocalCloud(port=0, ws_port=0) as running:
        yield running


@pytest.fixture
def config(cloud) -> config_h.SketchConfig:
    """A virtual board's chip, registered, with its config.h values (the board then powers off)."""
    return registered_config(cloud, "fw", "fw_01")


def run_firmware(config, **settings) -> vboard.VirtualBoard:
    return vboard.VirtualBoard(
        "fw",
        aws_config=config,
        firmware_settings=FirmwareSettings(interval=0.2, retry_delay=1, **settings),
    ).start()


def test_payload_is_the_sketch_json_on_its_topic(cloud, config) -> None:
    device = run_firmware(config)
    try:
        wait_until(lambda: len(cloud.messages("fw_01")) >= 2, what="two readings")
    finally:
        device.close()
    message = cloud.messages("fw_01")[0]
    assert message.topic == "things/fw_01/environment"
    text = message.payload.decode()
    assert text.startswith('{\n  "temperature": ') and text.endswith("\n}")
    reading = telemetry.decode(message.topic, message.payload, 0)
    assert isinstance(reading, telemetry.Reading)
    assert reading.temperature == round(reading.temperature, 1)
    assert reading.humidity == int(reading.humidity)


def test_sensor_walk_stays_indoors_and_is_seeded() -> None:
    a, b = SensorWalk(7), SensorWalk(7)
    readings = [a.read() for _ in range(5000)]
    assert readings[:50] == [b.read() for _ in range(50)]
    assert all(66.2 <= t <= 77.0 and 30 <= h <= 60 for t, h in readings)
    assert len({t for t, _ in readings[:100]}) > 5  # it moves


def test_wrong_client_id_is_refused(cloud, config) -> None:
    device = run_firmware(config, misbehave="wrong-client-id")
    try:
        log = device.folder / "serial.log"
        wait_until(lambda: "not authorized" in log.read_text(), what="the refusal")
        assert not device.firmware.connected.is_set()
    finally:
        device.close()
    assert cloud.messages("fw_01") == []


def test_forbidden_topic_disconnects(cloud, config) -> None:
    device = run_firmware(config, misbehave="forbidden-topic")
    try:
        log = device.folder / "serial.log"
        wait_until(lambda: "connection lost" in log.read_text(), what="the disconnection")
    finally:
        device.close()
    assert cloud.messages("someone-else") == []


def test_payload_that_is_not_json_is_counted_not_crashed_on(cloud, config) -> None:
    device = run_firmware(config, misbehave="not-json")
    watch = telemetry.Telemetry(cloud.observer(), "fw_01").start()
    try:
        wait_until(lambda: watch.rejected >= 2, what="rejected payloads")
        assert watch.readings() == []
        assert all(
            e.reason == "not JSON" for e in watch.events if isinstance(e, telemetry.Rejected)
        )
    finally:
        watch.stop()
        device.close()


def test_silent_board_publishes_nothing(cloud, config) -> None:
    device = run_firmware(config, misbehave="silent")
    try:
        wait_until(lambda: device.firmware.connected.is_set(), what="connection")
        time.sleep(0.8)
        assert cloud.messages("fw_01") == [] and device.firmware.published == 0
    finally:
        device.close()


def test_led_ignores_what_is_not_a_brightness(cloud, config) -> None:
    device = run_firmware(config)
    watch = telemetry.Telemetry(cloud.observer(), "fw_01").start()
    log = device.folder / "serial.log"
    try:
        wait_until(lambda: device.firmware.connected.is_set(), what="connection")
        time.sleep(0.3)
        # The most AWS IoT delivers, from anyone who may publish there; it starts like 100.
        for payload in (b"9" * (128 * 1024), b"250", b"dim", b"40"):
            watch.client.publish("things/fw_01/led", payload, qos=1).wait_for_publish(5)
        wait_until(lambda: device.firmware.led == 40, what="40 applied")
        wait_until(
            lambda: cloud.messages("fw_01", topic_suffix="/led/state"), what="the LED's state"
        )
    finally:
        watch.stop()
        device.close()
    lines = [line for line in log.read_text().splitlines() if line.startswith("LED: ")]
    assert lines == [
        "LED: ignored a message of 131072 bytes (a brightness is 0-100)",
        "LED: ignored a message of 3 bytes (a brightness is 0-100)",
        "LED: ignored a message of 3 bytes (a brightness is 0-100)",
        "LED: 40%",
    ]
    states = cloud.messages("fw_01", topic_suffix="/led/state")
    assert [m.payload for m in states] == [b"40"]  # nothing reported for the ignored ones


@pytest.mark.parametrize("value", [-1, 101, 50.5, True])
def test_telemetry_refuses_bad_brightness(value) -> None:
    with pytest.raises(telemetry.TelemetryError, match="0 to 100"):
        telemetry.check_brightness(value)


def test_decode_counts_bad_payloads() -> None:
    assert (
        telemetry.decode("things/a/environment", b'{"temperature": 70}', 1).reason
        == "no humidity field"
    )
    for state in (b"x", b"\xc2\xb2", b"9" * 5000, b"-1"):
        assert telemetry.decode("things/a/led/state", state, 1).reason.startswith(
            "not a whole number"
        )
    assert telemetry.decode("things/a/led/state", b" 40\r\n", 1).value == 40


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"temperature": 1' + b"0" * 400 + b', "humidity": 1}', "not a finite number"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"temperature": "warm", "humidity": 40}', "not a number"),
        (b"[" * 100_000, "not JSON"),  # RecursionError
        (b'{"temperature": NaN, "humidity": 40}', "not a finite number"),
        (b'{"temperature": 70, "humidity": Infinity}', "not a finite number"),
        (b'{"temperature": "nan", "humidity": 40}', "not a finite number"),
        (b'{"temperature": 1e400, "humidity": 40}', "not a finite number"),
    ],
    ids=["400-digits", "list", "text", "nested", "NaN", "Infinity", "nan-text", "1e400"],
)
def test_a_hostile_reading_is_rejected_never_raised(payload: bytes, reason: str) -> None:
    # Raised on paho's thread, any of these ended the class server's only observer.
    assert telemetry.decode("things/a/environment", payload, 1).reason == reason
    assert telemetry.decode("things/a/led", b"5", 1) is None
    assert telemetry.decode("other/a", b"{}", 1) is None


def test_backfill_from_the_recorder(cloud, config) -> None:
    device = run_firmware(config)
    try:
        wait_until(lambda: len(cloud.messages("fw_01")) >= 3, what="recorded readings")
    finally:
        device.close()
    watch = telemetry.Telemetry(cloud.observer(), "fw_01")
    assert watch.backfill(cloud.messages("fw_01")) >= 3
    assert len(watch.readings("fw_01")) >= 3


def kit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_kit_sim_aws_watch_and_led(tmp_path) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    assert kit("cloud", "up", "--port", str(ports[0]), "--ws-port", str(ports[1])).returncode == 0
    sim = None
    try:
        with vboard.VirtualBoard("cli", SketchSettings(), ChipTiming.instant()) as csr_board:
            capture = board.capture_csr(csr_board.info.url, name="cli_01", lock=True)
        (tmp_path / "csr.pem").write_text(capture.csr.pem)
        assert kit("register", str(tmp_path / "csr.pem")).returncode == 0
        config_file = tmp_path / "config.h"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "kit.cli",
                "config-h",
                "--ssid",
                "Class",
                "--out",
                str(config_file),
                "--password-stdin",
            ],
            input="virtual-wifi\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kit.cli",
                "sim",
                "--board",
                "cli",
                "--firmware",
                "aws",
                "--config",
                str(config_file),
                "--interval",
                "0.3",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("Published" in line for line in lines):
            lines.append(sim.stdout.readline())
        assert "AWS firmware for cli_01" in lines[0]
        assert any("MQTT: connected" in line for line in lines)
        led = kit("led", "cli_01", "30")
        assert led.stdout.strip() == "cli_01: LED at 30 %.", led.stdout + led.stderr
        watch = subprocess.Popen(
            [sys.executable, "-m", "kit.cli", "watch", "cli_01"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        seen = [watch.stdout.readline() for _ in range(3)]
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=10)
        assert seen[0].startswith("Watching cli_01")
        assert " F, " in seen[1] and seen[1].split()[1] == "cli_01:"
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(timeout=10)
        kit("cloud", "down")


def test_observer_records_for_the_next_session(cloud, config, tmp_path) -> None:
    from kit.cloud.store import Store

    recording = tmp_path / "observed.db"  # as AWS's observer records (its record_to)
    device = run_firmware(config)
    watch = telemetry.Telemetry(cloud.observer(), "fw_01", record_to=recording).start()
    try:
        wait_until(lambda: len(watch.readings()) >= 3, what="three readings")
    finally:
        watch.stop()
        device.close()
    later = telemetry.Telemetry(cloud.observer(), "fw_01")
    assert later.backfill(Store(recording).messages("fw_01")) >= 3
    assert [r.temperature for r in later.readings()][:3] == [
        r.temperature for r in watch.readings()
    ][:3]


def test_background_board_is_reflashed_with_the_aws_firmware(cloud, config, tmp_path) -> None:
    config_file = tmp_path / "config.h"
    config_file.write_text(config_h.to_text(config))
    info = vboard.start("fw", instant_chip=True)
    try:
        assert info.firmware == "csr"
        flashed = vboard.start("fw", config=config_file, interval=0.3)
        assert flashed.firmware == "aws" and flashed.pid != info.pid
        wait_until(lambda: len(cloud.messages("fw_01")) >= 2, what="readings from the board")
        assert "MQTT: connected" in flashed.serial_log.read_text()
    finally:
        vboard.stop("fw")
