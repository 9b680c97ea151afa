"""The README's least-privilege IAM policy against what the kit really does with AWS.

Control plane: every boto3 call in kit/ is found statically (client attributes, and the literal
operation names handed to a dispatcher that looks the operation up with `getattr`), turned into
its IAM action through botocore's service model, and must equal the actions the README grants,
none missing and none extra. Data plane: the AWS observer (MQTT over WebSocket, signed with the
user's own credentials) must be allowed to connect with the client id it uses, subscribe to the
filters it subscribes to, receive what they deliver and publish its LED commands, and no more
(never connect as a device, never publish a reading); the local broker's `observer_may` must give
the same answers.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import botocore
import botocore.session
import paho.mqtt.client as mqtt
import pytest
from aws_moto import REGION
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

import kit
from kit import telemetry
from kit.cloud.aws import AwsCloud
from kit.cloud.policy import OBSERVER_ID_PREFIX, PRESENCE_PREFIX, observer_may

ROOT = Path(__file__).resolve().parent.parent
KIT = Path(kit.__file__).resolve().parent

# The IAM prefix of each boto3 service the kit may use; a new service needs a line here (and a
# look at how IAM names its actions: not every service's prefix is its boto3 name).
IAM_PREFIX = {"iot": "iot", "sts": "sts"}
# AWS answers these for any credentials ("No permissions are required to perform this
# operation", STS API reference), so the policy grants them no statement.
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}
MQTT_ACTIONS = {"iot:Connect", "iot:Subscribe", "iot:Receive", "iot:Publish"}
# Which kind of resource each MQTT action is checked against ("AWS IoT Core policy actions").
RESOURCE_KIND = {
    "iot:Connect": "client",
    "iot:Subscribe": "topicfilter",
    "iot:Receive": "topic",
    "iot:Publish": "topic",
}
ARN = "arn:aws:iot:REGION:ACCOUNT:"  # the README's placeholders, kept as they are


# The kit's boto3 calls, found in its source


def operations(service: str) -> dict[str, str]:
    """boto3's method name -> the API operation name, from botocore's service model."""
    model = botocore.session.get_session().get_service_model(service)
    return {
        botocore.xform_name(name): model.operation_model(name).name
        for name in model.operation_names
    }


@dataclass
class Scan:
    calls: set[tuple[str, str]]  # (boto3 service, API operation name)
    unreadable: list[str]  # where an operation name is not a literal: the scan cannot tell


def _client_service(node: ast.AST) -> str | None:
    """The service of `<session or boto3>.client("<service>", ...)`, else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "client"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _name(node: ast.AST) -> str | None:
    """`iot` for both `iot` and `self.iot`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _dispatchers(tree: ast.AST) -> dict[str, int]:
    """Functions that look an operation up by one of their parameters, getattr(client, op):
    their name -> that parameter's position (self left out)."""
    found: dict[str, int] = {}
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        parameters = [a.arg for a in function.args.args if a.arg not in ("self", "cls")]
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Name)
                and node.args[1].id in parameters
            ):
                found[function.name] = parameters.index(node.args[1].id)
    return found


def scan(root: Path) -> Scan:
    """Every AWS API call the code under `root` makes, as far as its source says."""
    trees = {path: ast.parse(path.read_text(), str(path)) for path in sorted(root.rglob("*.py"))}
    # Where a client is kept: `self.iot = session.client("iot")` -> {"iot": "iot"}
    clients: dict[str, str] = {}
    services: set[str] = set()
    dispatchers: dict[str, int] = {}  # found in the modules that make a client
    own: dict[Path, set[str]] = {}  # the dispatchers each module defines
    for path, tree in trees.items():
        made = {s for s in map(_client_service, ast.walk(tree)) if s is not None}
        services |= made
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _client_service(node.value) is not None:
                for target in node.targets:
                    if _name(target) is not None:
                        clients[str(_name(target))] = str(_client_service(node.value))
        if made:
            own[path] = set(_dispatchers(tree))
            dispatchers.update(_dispatchers(tree))
    unknown = services - set(IAM_PREFIX)
    assert not unknown, f"the kit now uses {unknown}: add its IAM prefix and the README's rights"
    known = {service: operations(service) for service in services}

    found: set[tuple[str, str]] = set()
    unreadable: list[str] = []
    for path, tree in trees.items():
        where = f"{path.relative_to(root.parent)}"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            method, receiver = node.func.attr, node.func.value
            owner = _name(receiver)
            # A client's own method: self.iot.create_thing(...), iot.get_paginator("list_x")
            if owner in clients:
                service = clients[owner]
                if method in ("get_paginator", "get_waiter"):
                    op = _literal(node.args[0]) if node.args else None
                    if op is None:
                        unreadable.append(f"{where}:{node.lineno}")
                        continue
                    method = op
                if method in known[service]:
                    found.add((service, known[service][method]))
                continue
            # A dispatcher's call: self.call("create_thing", ...), or cloud.call(...) elsewhere
            if method not in dispatchers:
                continue
            index = dispatchers[method]
            op = _literal(node.args[index]) if len(node.args) > index else None
            mine = method in own.get(path, set()) and _name(receiver) == "self"
            if op is None:
                if mine:  # a name the scan cannot read: it could be any operation
                    unreadable.append(f"{where}:{node.lineno}")
                continue
            matches = [(s, ops[op]) for s, ops in known.items() if op in ops]
            if mine or matches:  # elsewhere, a `.call("x")` that names no API is another call
                assert len(matches) == 1, f"{where}:{node.lineno}: {op} in {sorted(services)}?"
                found.add(matches[0])
    return Scan(found, unreadable)


def iam_actions(calls: set[tuple[str, str]]) -> set[str]:
    return {f"{IAM_PREFIX[service]}:{operation}" for service, operation in calls}


# The README's policy


def readme_policy() -> list[dict]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"least-privilege IAM policy.*?```json\n(.*?)```", readme, re.DOTALL)
    assert block, "the README's least-privilege IAM policy block is gone"
    policy = json.loads(block.group(1))
    assert policy["Version"] == "2012-10-17"
    return policy["Statement"]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def granted(action: str, resource: str) -> bool:
    """Whether the README allows `action` on `resource`, with IAM's `*` and `?` wildcards."""
    for statement in readme_policy():
        if action in as_list(statement["Action"]):
            for pattern in as_list(statement["Resource"]):
                wildcard = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
                if re.fullmatch(wildcard, resource):
                    return True
    return False


def test_every_statement_is_a_plain_allow() -> None:
    for statement in readme_policy():
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{action}: name each action the kit needs"


def test_the_policy_grants_exactly_the_apis_the_kit_calls() -> None:
    found = scan(KIT)
    assert not found.unreadable, f"operation names the scan cannot read: {found.unreadable}"
    needed = iam_actions(found.calls) - NEEDS_NO_PERMISSION
    statements = readme_policy()
    control = {a for s in statements if s["Resource"] == "*" for a in as_list(s["Action"])}
    assert not control & MQTT_ACTIONS, "MQTT rights belong on the observer's resources"
    assert sorted(needed - control) == [], "the kit calls these; the README does not grant them"
    assert sorted(control - needed) == [], "the README grants these; the kit never calls them"
    mqtt_only = {a for s in statements if s["Resource"] != "*" for a in as_list(s["Action"])}
    assert mqtt_only <= MQTT_ACTIONS


def test_the_scan_sees_each_way_of_calling(tmp_path: Path) -> None:
    """A new call, however it is made, changes what the scan finds (so the test above fails)."""
    package = tmp_path / "kit"
    package.mkdir()
    (package / "aws.py").write_text(
        "import boto3\n"
        "class Cloud:\n"
        "    def __init__(self, session):\n"
        "        self.iot = session.client('iot')\n"
        "        self.sts = session.client('sts')\n"
        "    def call(self, operation, **kwargs):\n"
        "        client = self.sts if operation == 'get_caller_identity' else self.iot\n"
        "        return getattr(client, operation)(**kwargs)\n"
        "    def work(self):\n"
        "        self.call('create_thing', thingName='x')\n"
        "        self.call('get_caller_identity')\n"
        "        self.iot.search_index(queryString='x')\n"
        "        self.iot.get_paginator('list_thing_groups')\n"
        "        iot = boto3.client('iot')\n"
        "        iot.describe_thing(thingName='x')\n"
        "        self.call(self.name)\n"
    )
    found = scan(package)
    assert iam_actions(found.calls) == {
        "iot:CreateThing",
        "sts:GetCallerIdentity",
        "iot:SearchIndex",
        "iot:ListThingGroups",
        "iot:DescribeThing",
    }
    assert found.unreadable == ["kit/aws.py:16"]
    (package / "data.py").write_text("import boto3\ndata = boto3.client('iot-data')\n")
    with pytest.raises(AssertionError, match="iot-data"):
        scan(package)


def test_the_scan_finds_the_calls_the_kit_is_known_to_make() -> None:
    """A guard on the scan itself: if it went blind, the equality above could pass on nothing."""
    assert {
        "iot:CreateCertificateFromCsr",
        "iot:ListPrincipalThings",
        "iot:DescribeEndpoint",
        "sts:GetCallerIdentity",
    } <= iam_actions(scan(KIT).calls)


# The observer's MQTT rights


@pytest.fixture
def observer(endpoint, monkeypatch):
    """The AWS observer's real identity (moto answers DescribeEndpoint), and the client ids
    Telemetry gives paho."""
    ids: list[str] = []

    class Recording(mqtt.Client):
        def __init__(self, *args, **kwargs) -> None:
            ids.append(kwargs["client_id"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(telemetry.mqtt, "Client", Recording)
    return AwsCloud(region=REGION, endpoint_url=endpoint).observer(), ids


def watched(observer, thing: str | None) -> tuple[str, list[str], list[str]]:
    """What Telemetry does on AWS: its client id, what it subscribes to once connected and
    where its LED command goes."""
    identity, ids = observer
    watch = telemetry.Telemetry(identity, thing)
    subscribed: list[str] = []
    published: list[str] = []
    watch.client.subscribe = lambda topics, *a, **k: subscribed.extend(t for t, _ in topics)
    watch.client.publish = lambda topic, *a, **k: published.append(topic)
    # paho's callback on CONNACK, as paho calls it: (client, userdata, flags, reason, properties)
    watch.client.on_connect(watch.client, None, None, ReasonCode(PacketTypes.CONNACK), None)
    watch.led(thing or "desk-1", 40)  # sent from the fair queue's own thread
    deadline = time.monotonic() + 5
    while not published and time.monotonic() < deadline:
        time.sleep(0.01)
    watch.leds.close()
    return ids[-1], subscribed, published


def delivered(topic_filter: str) -> list[str]:
    """Topics the filter delivers: `+` stood in for by one level, `#` by one and by several."""
    levels = topic_filter.replace("+", "connected", 1).replace("+", "desk-1")
    return [levels.replace("#", "temperature"), levels.replace("#", "desk-1/led/state")]


@pytest.mark.parametrize("thing", [None, "desk-1"])
def test_the_observer_may_do_what_telemetry_does(observer, thing) -> None:
    client_id, subscribed, published = watched(observer, thing)
    assert granted("iot:Connect", f"{ARN}client/{client_id}"), client_id
    assert subscribed and published
    for topic_filter in subscribed:
        assert granted("iot:Subscribe", f"{ARN}topicfilter/{topic_filter}"), topic_filter
        for topic in delivered(topic_filter):
            assert granted("iot:Receive", f"{ARN}topic/{topic}"), topic
    assert any(f.startswith(PRESENCE_PREFIX) for f in subscribed)
    for topic in published:
        assert granted("iot:Publish", f"{ARN}topic/{topic}"), topic


def test_the_observer_may_not_act_as_a_device() -> None:
    new_id = OBSERVER_ID_PREFIX + secrets.token_hex(4)
    assert granted("iot:Connect", f"{ARN}client/{new_id}")
    for client_id in ("desk-1", "kit-observer", "observer-kit-observer-1"):
        assert not granted("iot:Connect", f"{ARN}client/{client_id}"), client_id


# The same questions the local broker's observer rule answers, one row each.
AS_THE_LOCAL_BROKER = [
    ("subscribe", "things/#"),
    ("subscribe", "things/desk-1/#"),
    ("subscribe", f"{PRESENCE_PREFIX}+/+"),
    ("subscribe", f"{PRESENCE_PREFIX}+/desk-1"),
    ("subscribe", "#"),
    ("subscribe", "$aws/things/desk-1/shadow/#"),
    ("subscribe", "$aws/events/subscriptions/#"),
    ("receive", "things/desk-1/temperature"),
    ("receive", f"{PRESENCE_PREFIX}disconnected/desk-1"),
    ("receive", "$aws/things/desk-1/shadow/update"),
    ("receive", "other/desk-1"),
    ("publish", "things/desk-1/led"),
    ("publish", "things/desk-1/temperature"),
    ("publish", "things/desk-1/led/state"),
    ("publish", f"{PRESENCE_PREFIX}connected/desk-1"),
    ("publish", "things/desk-1"),
]


@pytest.mark.parametrize(("action", "topic"), AS_THE_LOCAL_BROKER)
def test_aws_and_the_local_broker_agree_on_the_observer(action: str, topic: str) -> None:
    kind = "topicfilter" if action == "subscribe" else "topic"
    aws = granted(f"iot:{action.title()}", f"{ARN}{kind}/{topic}")
    assert aws == observer_may(action, topic), (action, topic)


def test_each_mqtt_right_names_its_kind_of_resource() -> None:
    for statement in readme_policy():
        for action in set(as_list(statement["Action"])) & MQTT_ACTIONS:
            for resource in as_list(statement["Resource"]):
                assert resource.startswith(f"{ARN}{RESOURCE_KIND[action]}/"), resource


def test_an_access_denied_names_the_iam_action_of_every_call() -> None:
    # The message a denied call shows names the right the README grants (teardown's
    # ListPrincipalThings was missing from a hand-kept list, and read "list_principal_things").
    from botocore.exceptions import ClientError

    from kit.cloud.aws_errors import explain

    for operation, action in (
        ("list_principal_things", "iot:ListPrincipalThings"),
        ("create_certificate_from_csr", "iot:CreateCertificateFromCsr"),
        ("get_caller_identity", "sts:GetCallerIdentity"),
    ):
        denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, operation)
        assert f"AWS denied {action}:" in str(explain(denied, operation))
