"""The device policy and AWS IoT Core's limits: as an AWS IoT policy and as the local checks.

A device connects only as the common name of its certificate, and publishes, receives and
subscribes only below things/<its client id>/. An observer (a notebook, a dashboard) reads every
device and the lifecycle events and sends LED commands. Which of the two a certificate is comes
from the registry (`Principal.role`), never from a name. The local broker enforces the same
rules and limits, so a class that moves to AWS sees the same behaviour.
"""

from __future__ import annotations

import json
from typing import Literal

from kit.cloud.store import DEVICE, OBSERVER, Principal

POLICY_NAME = "kit-device-policy"
OBSERVER_ID_PREFIX = "kit-observer-"
PRESENCE_PREFIX = "$aws/events/presence/"
Action = Literal["connect", "publish", "subscribe", "receive"]

# AWS IoT Core's message broker limits ("AWS IoT Core endpoints and quotas"), which the local
# broker enforces too.
MAX_PAYLOAD = 128 * 1024  # bytes in one publish
MAX_TOPIC_BYTES = 256
MAX_TOPIC_SLASHES = 7
MAX_CLIENT_ID_BYTES = 128
PUBLISHES_PER_SECOND = 100  # inbound, per connection
SUBSCRIPTIONS_PER_REQUEST = 8
SUBSCRIPTIONS_PER_CONNECTION = 50
KEEPALIVE_RANGE = (30, 1200)  # seconds
SESSION_EXPIRY = 3600.0  # a persistent session outlives its connection by one hour
CONNECT_TIMEOUT = 10.0  # seconds from TCP accept to TLS done, and from there to CONNECT


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


def topic_problem(topic: str) -> str | None:
    """Why a topic name or filter breaks AWS's limits, or None."""
    size = len(topic.encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        return f"topic of {size} bytes (AWS allows {MAX_TOPIC_BYTES})"
    if topic.count("/") > MAX_TOPIC_SLASHES:
        return f"topic with {topic.count('/')} slashes (AWS allows {MAX_TOPIC_SLASHES})"
    return None


def served_keepalive(asked: int) -> int:
    """The keep-alive AWS serves: 0 and anything over 1,200 s become 1,200 s; 1-29 s become 30."""
    low, high = KEEPALIVE_RANGE
    return high if asked == 0 or asked > high else max(asked, low)


def may_connect(principal: Principal, client_id: str, common_name: str) -> bool:
    """iot:Connect: a device only as client/<its certificate's CN>; an observer with its prefix."""
    if principal.status != "ACTIVE":
        return False
    if principal.role == OBSERVER:
        return client_id.startswith(OBSERVER_ID_PREFIX)
    return principal.role == DEVICE and principal.name == common_name == client_id


def may(principal: Principal, client_id: str, action: Action, topic: str) -> bool:
    """Whether a connected principal may publish/subscribe/receive on `topic`."""
    if principal.role == OBSERVER:
        return observer_may(action, topic)
    return principal.role == DEVICE and device_may(client_id, action, topic)


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
        return levels[0] == "things" or topic.startswith(PRESENCE_PREFIX)
    if action == "publish":
        return (
            len(levels) == 3 and levels[0] == "things" and levels[2] == "led" and "#" not in topic
        )
    return False
