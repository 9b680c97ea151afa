"""The prototype end to end: virtual board -> CSR -> local registration -> config.h -> virtual
AWS firmware over mutual TLS -> telemetry and LED commands -> the broker restarts mid-stream."""

from __future__ import annotations

import socket

import pytest
from helpers import wait_until

from kit import board, config_h, steps, telemetry
from kit.cloud.local import LocalCloud
from kit.sim import board as vboard
from kit.sim.aws_firmware import FirmwareSettings
from kit.sim.csr_sketch import SketchSettings
from kit.sim.eccx08 import ChipTiming


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(120)
def test_board_to_plot_and_back(tmp_path) -> None:
    port, ws_port = free_port(), free_port()
    cloud = LocalCloud(port=port, ws_port=ws_port).start()
    try:
        # Exercise 1: the CSR, over the virtual board's serial port.
        with vboard.VirtualBoard("proto", SketchSettings(), ChipTiming.instant()) as csr_board:
            capture = board.capture_csr(csr_board.info.url, name="proto_01", slot=2, lock=True)
        # Exercise 2: register it.
        registration = steps.register(cloud, capture.csr, slot=capture.slot).registration
        # Exercise 3: config.h, then re-flash the board with the AWS firmware.
        rendered = config_h.render(
            "Classroom",
            "virtual-wifi",
            registration.broker_host,
            registration.certificate_pem,
            port=registration.broker_port,
            slot=capture.slot,
            local_ca=registration.ca_pem,
        )
        config = config_h.parse(rendered.text)
        settings = FirmwareSettings(interval=0.3, retry_delay=1)
        with vboard.VirtualBoard("proto", aws_config=config, firmware_settings=settings) as device:
            firmware = device.firmware
            # Exercise 4: watch it and answer with the LED.
            watch = telemetry.Telemetry(cloud.observer(), "proto_01").start()
            wait_until(lambda: len(watch.readings()) >= 3, what="three readings")
            reading = watch.readings()[0]
            assert 60 < reading.temperature < 85 and 20 < reading.humidity < 70
            watch.led("proto_01", 40)
            wait_until(lambda: firmware.led == 40, what="the LED command")
            wait_until(lambda: watch.led_state("proto_01") == 40, what="led/state")

            # The broker goes away mid-stream and comes back.
            cloud.stop()
            wait_until(lambda: firmware.not_sent >= 2, what="readings not sent")
            cloud = LocalCloud(port=port, ws_port=ws_port).start()
            before = firmware.acknowledged
            wait_until(lambda: firmware.acknowledged >= before + 3, timeout=30, what="reconnection")
            watch.stop()
            acknowledged = firmware.acknowledged

        log = (device.folder / "serial.log").read_text()
        recorded = cloud.messages("proto_01", topic_suffix="/environment")
        assert len(recorded) >= acknowledged  # every reading the broker acknowledged was kept
        assert log.count("(not connected)") == firmware.not_sent >= 2
        assert "MQTT: connected" in log and "LED: 40%" in log
        assert log.count("MQTT: connected") >= 2  # it reconnected
        states = cloud.messages("proto_01", topic_suffix="/led/state")
        assert [m.payload for m in states] == [b"40"]
    finally:
        cloud.stop()
