"""The device policy: what a device may do, as an AWS IoT policy and as a local check.

A device connects only as the common name of its certificate, and publishes, receives and
subscribes only below things/<its client id>/. The local broker enforces the same rules, so a
class that moves to AWS sees the same behaviour.
"""

from __future__ import annotations

import json
from typing import Literal

POLICY_NAME = "kit-device-policy"
OBSERVER_ID_PREFIX = "kit-observer-"
Action = Literal["connect", "publish", "subscribe", "receive"]


def aws_policy_document(region: str, account: str) -> str:
    """The AWS IoT policy document, with the region and account filled in."""
    arn = f"arn:aws:iot:{region}:{account}"
    statements = [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"{arn}:client/${{iot:Certificate.Subject.CommonName}}",
        },
        {
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:Receive"],
            "Resource": f"{arn}:topic/things/${{iot:ClientId}}/*",
        },
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": f"{arn}:topicfilter/things/${{iot:ClientId}}/*",
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, indent=2)


def device_may(client_id: str, action: Action, topic: str) -> bool:
    """Whether a device connected as `client_id` may publish/subscribe/receive on `topic`."""
    prefix = f"things/{client_id}/"
    # AWS's `*` in a resource matches any characters, '/' and MQTT wildcards included, but the
    # prefix itself must match exactly: things/<id>/ with nothing replaced by a wildcard.
    return topic.startswith(prefix) and len(topic) > len(prefix)


def observer_may(action: Action, topic: str) -> bool:
    """The observer identity (notebooks, dashboards): read everything, command LEDs only."""
    levels = topic.split("/")
    if action in ("subscribe", "receive"):
        return levels[0] == "things"
    if action == "publish":
        return (
            len(levels) == 3 and levels[0] == "things" and levels[2] == "led" and "#" not in topic
        )
    return False
