"""The course's steps against each cloud through the `Cloud` interface alone, so a third backend
(a class server) drops in: status, register, things, presence, history, LED, teardown.

The local cloud is run fully (a virtual board's chip makes the CSR, the AWS firmware connects and
publishes); AWS over moto for what moto serves (register, things, unregister, teardown); its
history and presence are what the kit's observer recorded, fed as the observer feeds them.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest
from aws_moto import REGION
from helpers import csr_pem, wait_until

from kit import board, certs, config_h, devices, steps, telemetry
from kit.cloud import Cloud
from kit.cloud.aws import AwsCloud
from kit.cloud.local import LocalCloud
from kit.cloud.store import Store
from kit.errors import DeviceNotFoundError
from kit.sim import board as vboard
from kit.sim.aws_firmware import FirmwareSettings
from kit.sim.csr_sketch import SketchSettings
from kit.sim.eccx08 import ChipTiming


def register_through(cloud: Cloud, csr_text: str) -> steps.Registered:
    """The registration step, and what every backend promises about it."""
    assert cloud.status().reachable, str(cloud.status())
    registered = steps.register(cloud, certs.load_csr(csr_text), slot=0)
    thing = registered.registration.thing
    assert thing in cloud.things() and thing in cloud.made_by_kit()
    assert registered.became_current and devices.current_name() == thing
    assert devices.load(thing).cloud == cloud.name
    again = steps.register(cloud, certs.load_csr(csr_text))
    assert not again.registration.created and not again.became_current
    return registered


def tear_down_through(cloud: Cloud, thing: str) -> None:
    """Teardown removes what the kit registered, in the cloud and on this computer."""
    assert steps.teardown(cloud) == [thing]
    assert thing not in cloud.things() and cloud.made_by_kit() == []
    with pytest.raises(DeviceNotFoundError):
        devices.load(thing)


def test_the_course_on_the_local_cloud_through_the_interface() -> None:
    cloud = LocalCloud(port=0, ws_port=0)
    stopped = cloud.status()
    assert not stopped.reachable and "kit cloud up" in stopped.fix
    with cloud:
        with vboard.VirtualBoard("iface", SketchSettings(), ChipTiming.instant()) as csr_board:
            made = board.capture_csr(csr_board.info.url, name="iface_01", lock=True)
        registered = register_through(cloud, made.csr.pem)
        assert cloud.presence("iface_01").connected is None  # never connected yet

        rendered = steps.configure("Classroom", "virtual-wifi", record=registered.record)
        device = vboard.VirtualBoard(
            "iface",
            aws_config=config_h.parse(rendered.text),
            firmware_settings=FirmwareSettings(interval=0.2, retry_delay=1),
        ).start()
        try:
            wait_until(lambda: cloud.presence("iface_01").connected is True, what="presence")
            with telemetry.Telemetry(cloud.observer(), "iface_01") as watch:
                wait_until(lambda: watch.readings("iface_01"), what="a live reading")
                watch.led("iface_01", 40)
                wait_until(lambda: watch.led_state("iface_01") == 40, what="the LED state")
        finally:
            device.close()
        wait_until(lambda: cloud.presence("iface_01").connected is False, what="disconnected")
        wait_until(lambda: cloud.history("iface_01", topic_suffix="/led/state"), what="history")
        history = cloud.history("iface_01")  # at least one reading and the LED's answer
        assert {m.topic for m in history} >= {"things/iface_01/led/state"}
        assert any(m.topic.endswith("/environment") for m in history)
        assert cloud.history("iface_01", latest=1) == history[-1:]
        presence = cloud.presence("iface_01")
        assert presence.last_seen is not None and presence.last_seen <= time.time()
        tear_down_through(cloud, "iface_01")


def test_the_course_on_aws_through_the_interface(endpoint, real_keys) -> None:
    cloud = AwsCloud(region=REGION, endpoint_url=endpoint)
    iot = boto3.client("iot", region_name=REGION, endpoint_url=endpoint)
    iot.create_thing(thingName="not_the_kits")  # the account's own: teardown leaves it
    assert "-ats.iot." in str(cloud.status())
    registered = register_through(cloud, csr_pem("aws_iface_01"))
    assert cloud.history("aws_iface_01") == [] and cloud.presence("aws_iface_01").connected is None

    # What the kit's observer records as it watches (AWS keeps no history for the kit).
    recording = Store(cloud.observer().record_to or cloud.recording())
    now = time.time()
    body = json.dumps({"clientId": "aws_iface_01", "eventType": "connected"}).encode()
    recording.record("$aws/events/presence/connected/aws_iface_01", body, now - 2)
    recording.record("things/aws_iface_01/environment", b'{"temperature": 70, "humidity": 40}', now)
    recording.close()
    history = cloud.history("aws_iface_01")
    assert [m.topic for m in history] == ["things/aws_iface_01/environment"]
    presence = cloud.presence("aws_iface_01")
    assert presence.connected is True and presence.last_seen == pytest.approx(now)

    assert registered.record.cloud == "aws" and cloud.made_by_kit() == ["aws_iface_01"]
    tear_down_through(cloud, "aws_iface_01")
    assert cloud.things() == ["not_the_kits"]
    assert iot.list_policies()["policies"] == []  # the device policy went with the last device
