"""AWS IoT Core: register things with boto3, under the account's limits and the device policy.

Credentials come from boto3's standard chain (profile, environment, SSO). Each registration
looks before it creates (CreateCertificateFromCsr issues a new certificate on every call), and
rolls back what it created if a later step fails. Calls stay under the documented 15 requests
per second per API, and throttled calls are retried with backoff, so a class registering at
once never fails on throttling.
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from kit.aws_websocket import signed_path
from kit.certs import Csr, load_certificate, matches, validate_device_name
from kit.cloud import Cloud, CloudStatus, ObserverIdentity, Registration, amazon_roots
from kit.cloud.aws_errors import THROTTLED, explain
from kit.cloud.policy import OBSERVER_ID_PREFIX, POLICY_NAME, aws_policy_document
from kit.cloud.store import Message, Presence, Store
from kit.errors import AwsError, KeyMismatchError, KitError, NotFoundError, ThingTakenError
from kit.places import kit_home
from kit.ports import MQTT_TLS_PORT
from kit.trust import amazon_roots_file

MQTT_PORT = MQTT_TLS_PORT
# Under AWS's 15 requests/s (CreatePolicy: 10/s) in any second, a burst of two included.
RATES = {"default": 13.0, "create_policy": 5.0}
MAX_ATTEMPTS = 8


class TokenBucket:
    """At most `rate` calls per second, in any one-second window: a burst of two at most."""

    def __init__(self, rate: float, burst: float = 2.0) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = 1.0
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        """Wait until a call is allowed."""
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            time.sleep(wait)


# aws-global, eu-west-1, us-gov-west-1, cn-north-1, ap-southeast-4 ...
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


class AwsCloud(Cloud):
    """AWS IoT Core in one account and region."""

    name = "aws"

    def __init__(
        self,
        *,
        profile: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            session = boto3.Session(profile_name=profile, region_name=region)
        except ProfileNotFound:
            raise AwsError(
                f"There is no AWS profile called '{profile}'. `aws configure list-profiles` lists "
                "yours; or leave --profile out to use the default credentials."
            ) from None
        self._session = session
        self.profile = profile or ""
        self.region = session.region_name or ""
        if not self.region:
            raise AwsError(
                "No AWS region is set. Give one with --region (for example eu-west-1), or set it "
                "in your profile with `aws configure`."
            )
        if not _REGION.fullmatch(self.region):
            raise AwsError(
                f"'{self.region}' is not an AWS region name. Give one such as eu-west-1 or "
                "us-east-1 (the AWS console shows yours at the top right)."
            )
        # Our own retries (below) replace botocore's, so throttling is handled in one place.
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=30,
        )
        try:
            self.iot = session.client("iot", endpoint_url=endpoint_url, config=config)
            self.sts = session.client("sts", endpoint_url=endpoint_url, config=config)
        except BotoCoreError as error:  # a profile whose settings boto3 cannot use
            raise AwsError(
                f"The AWS settings cannot be used ({error}). Check the profile with "
                "`aws configure list`."
            ) from None
        self._buckets: dict[str, TokenBucket] = {}
        self._sleep = sleep
        self._endpoint: str | None = None
        self._policy_ready = False

    # Calls, paced and retried

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One IoT API call: paced per API, retried with backoff while AWS throttles."""
        bucket = self._buckets.setdefault(
            operation, TokenBucket(RATES.get(operation, RATES["default"]))
        )
        client = self.sts if operation == "get_caller_identity" else self.iot
        for attempt in range(MAX_ATTEMPTS):
            bucket.take()
            try:
                return cast(dict[str, Any], getattr(client, operation)(**kwargs))
            except ClientError as error:
                if error.response["Error"]["Code"] not in THROTTLED or attempt == MAX_ATTEMPTS - 1:
                    raise explain(error, operation) from None
                self._sleep(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random() / 2))
            except (
                NoCredentialsError,
                NoRegionError,
                EndpointConnectionError,
                BotoCoreError,
            ) as error:
                raise explain(error, operation) from None
        raise AssertionError("unreachable")

    # The device policy and the endpoint

    def ensure_policy(self) -> None:
        """Create the device policy once (with this account and region filled in)."""
        if self._policy_ready:
            return
        try:
            self.call("get_policy", policyName=POLICY_NAME)
        except NotFoundError:
            account = self.call("get_caller_identity")["Account"]
            self.call(
                "create_policy",
                policyName=POLICY_NAME,
                policyDocument=aws_policy_document(self.region, account),
            )
        self._policy_ready = True

    @property
    def endpoint(self) -> str:
        """The account's ATS data endpoint: the broker devices connect to."""
        if self._endpoint is None:
            self._endpoint = self.call("describe_endpoint", endpointType="iot:Data-ATS")[
                "endpointAddress"
            ]
        return self._endpoint

    # Registration

    def _register(self, csr: Csr) -> Registration:
        thing = validate_device_name(csr.common_name).name
        existing = self._existing(thing, csr)
        if existing is not None:
            return existing
        self.ensure_policy()
        undo: list[Callable[[], Any]] = []
        try:
            cert = self.call(
                "create_certificate_from_csr", certificateSigningRequest=csr.pem, setAsActive=True
            )
            arn, cert_id, pem = (
                cert["certificateArn"],
                cert["certificateId"],
                cert["certificatePem"],
            )
            undo.append(lambda: self._delete_certificate(arn, cert_id))
            if not matches(csr, load_certificate(pem)):
                raise KeyMismatchError(
                    "AWS returned a certificate that does not carry your chip's key, so the board "
                    "could never use it. It was deleted again; tell the instructor."
                )
            self.call("create_thing", thingName=thing)
            undo.append(lambda: self.call("delete_thing", thingName=thing))
            self.call("attach_policy", policyName=POLICY_NAME, target=arn)
            undo.append(lambda: self.call("detach_policy", policyName=POLICY_NAME, target=arn))
            self.call("attach_thing_principal", thingName=thing, principal=arn)
            undo.append(lambda: self.call("detach_thing_principal", thingName=thing, principal=arn))
            endpoint = self.endpoint
        except BaseException:
            for step in reversed(undo):
                with contextlib.suppress(AwsError):  # best effort: report the first failure
                    step()
            raise
        return Registration(thing, pem, cert_id, endpoint, MQTT_PORT, amazon_roots(), self.name)

    def _existing(self, thing: str, csr: Csr) -> Registration | None:
        """The registration of this CSR's key if the thing has it; refuse another key."""
        try:
            principals = self.call("list_thing_principals", thingName=thing)["principals"]
        except NotFoundError:
            return None
        for arn in principals:
            cert_id = arn.rsplit("/", 1)[-1]
            description = self.call("describe_certificate", certificateId=cert_id)[
                "certificateDescription"
            ]
            pem = description["certificatePem"]
            if description["status"] == "ACTIVE" and matches(csr, load_certificate(pem)):
                return Registration(
                    thing,
                    pem,
                    cert_id,
                    self.endpoint,
                    MQTT_PORT,
                    amazon_roots(),
                    self.name,
                    created=False,
                )
        raise ThingTakenError(
            f"The thing '{thing}' already exists in AWS IoT with another key (another board, or "
            "a new key in the same slot). Choose another device name, or remove the old one "
            "first: course.register(replace=True) in notebook 02, or "
            f"`kit unregister {thing} --cloud aws` in a terminal."
        )

    def unregister(self, thing: str) -> None:
        principals = self.call("list_thing_principals", thingName=thing)["principals"]
        for arn in principals:
            self.call("detach_thing_principal", thingName=thing, principal=arn)
            self._delete_certificate(arn, arn.rsplit("/", 1)[-1])
        self.call("delete_thing", thingName=thing)
        self._forget_recorded(thing)

    def _forget_recorded(self, thing: str) -> None:
        """Drop what the kit's observer recorded of a removed thing (it counts on no quota)."""
        if self.recording().exists():
            store = Store(self.recording())
            try:
                store.forget_messages(thing)
            finally:
                store.close()

    def _delete_certificate(self, arn: str, cert_id: str) -> None:
        """Detach the certificate's policies, deactivate it and delete it."""
        for policy in self.call("list_attached_policies", target=arn)["policies"]:
            self.call("detach_policy", policyName=policy["policyName"], target=arn)
        self.call("update_certificate", certificateId=cert_id, newStatus="INACTIVE")
        self.call("delete_certificate", certificateId=cert_id)

    def things(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            page = self.call("list_things", **({"nextToken": token} if token else {}))
            names += [t["thingName"] for t in page["things"]]
            token = page.get("nextToken")
            if not token:
                return sorted(names)

    def remove_policy_if_unused(self) -> bool:
        """Delete the device policy when no certificate uses it any more."""
        try:
            targets = self.call("list_targets_for_policy", policyName=POLICY_NAME)["targets"]
        except NotFoundError:
            return False
        if targets:
            return False
        self.call("delete_policy", policyName=POLICY_NAME)
        self._policy_ready = False
        return True

    def _tidy_up(self) -> None:
        self.remove_policy_if_unused()

    def made_by_kit(self) -> list[str]:
        """The things whose certificates carry the kit's device policy (never the account's
        other things)."""
        try:
            targets = self.call("list_targets_for_policy", policyName=POLICY_NAME)["targets"]
        except NotFoundError:
            return []
        names: set[str] = set()
        for arn in targets:
            names.update(self.call("list_principal_things", principal=arn)["things"])
        return sorted(names)

    def status(self) -> CloudStatus:
        """Reachable when the account answers with its endpoint (credentials work)."""
        try:
            endpoint = self.endpoint
        except KitError as error:
            summary = f"AWS IoT Core in {self.region} cannot be reached."
            return CloudStatus(False, summary, str(error))
        return CloudStatus(True, f"AWS IoT Core answers in {self.region}: {endpoint}:{MQTT_PORT}.")

    def presence(self, thing: str) -> Presence:
        """What the kit's observer recorded of `thing`'s lifecycle events."""
        if not self.recording().exists():
            return Presence(thing, None, None, None)
        store = Store(self.recording())
        try:
            return store.presence(thing)
        finally:
            store.close()

    def record_extras(self) -> dict[str, str]:
        return {"region": self.region, "profile": self.profile}

    def observer(self) -> ObserverIdentity:
        """Watch devices over MQTT-over-WebSocket, signed with your own AWS credentials (no
        device certificate). The signed URL is valid for an hour."""
        credentials = self._session.get_credentials()
        if credentials is None:
            raise explain(NoCredentialsError(), "describe_endpoint")
        frozen = credentials.get_frozen_credentials()
        path = signed_path(
            self.endpoint,
            self.region,
            cast(str, frozen.access_key),  # typed Optional; found credentials have keys
            cast(str, frozen.secret_key),
            frozen.token,
        )
        return ObserverIdentity(
            self.endpoint,
            443,
            443,
            amazon_roots_file(),
            None,
            None,
            OBSERVER_ID_PREFIX,
            path,
            transport="websockets",  # observers sign in with SigV4, which only WebSocket takes
            record_to=self.recording(),
        )

    def recording(self) -> Path:
        """Where the kit's observer records what it sees: AWS keeps no history for us."""
        return kit_home() / "observed" / "aws.db"

    def history(self, thing: str, **query: Any) -> list[Message]:
        """What the kit's observer recorded of `thing` in earlier sessions."""
        if not self.recording().exists():
            return []
        store = Store(self.recording())
        try:
            return store.messages(thing, **query)
        finally:
            store.close()
