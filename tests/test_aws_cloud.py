"""AWS IoT Core through boto3 over HTTP against moto's server, run in-process so its IoT backend
can be patched: to sign the CSR's own key (moto signs an unrelated RSA key and cannot parse the
chip's names), to fail a step, or to throttle."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from aws_moto import REGION
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from helpers import csr_pem
from moto.core.exceptions import JsonRESTError
from moto.iot.models import IoTBackend

from kit import certs, devices, errors, steps
from kit.cloud import aws
from kit.cloud.aws import AwsCloud
from kit.cloud.policy import POLICY_NAME


def calls_to(monkeypatch, method: str) -> list[float]:
    """Record when moto's backend receives each call of `method`."""
    seen: list[float] = []
    original = getattr(IoTBackend, method)

    def recorded(self, *args, **kwargs):
        seen.append(time.monotonic())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(IoTBackend, method, recorded)
    return seen


def fail(monkeypatch, method: str, code: str, times: int = 10**9) -> list[int]:
    """Make `method` answer with error `code` for its first `times` calls."""
    count = [0]
    original = getattr(IoTBackend, method)

    def failing(self, *args, **kwargs):
        count[0] += 1
        if count[0] <= times:
            raise JsonRESTError(code, f"{code} from the test")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(IoTBackend, method, failing)
    return count


def cloud(endpoint, **kw) -> AwsCloud:
    return AwsCloud(region=REGION, endpoint_url=endpoint, **kw)


def test_register_creates_certificate_thing_and_policy(endpoint, real_keys) -> None:
    aws_cloud = cloud(endpoint)
    csr = certs.load_csr(csr_pem("device_01"))
    registration = steps.register(aws_cloud, csr, slot=1).registration
    assert registration.thing == "device_01" and registration.created
    assert registration.broker_host.endswith(f"-ats.iot.{REGION}.amazonaws.com")
    assert registration.broker_port == 8883
    assert root_names(registration.ca_pem) == ["Amazon Root CA 1", "Amazon Root CA 3"]
    assert certs.matches(csr, certs.load_certificate(registration.certificate_pem))

    iot = aws_cloud.iot
    [arn] = iot.list_thing_principals(thingName="device_01")["principals"]
    assert arn.endswith(registration.certificate_id)
    described = iot.describe_certificate(certificateId=registration.certificate_id)
    assert described["certificateDescription"]["status"] == "ACTIVE"
    assert [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]] == [
        POLICY_NAME
    ]
    document = json.loads(iot.get_policy(policyName=POLICY_NAME)["policyDocument"])
    account = aws_cloud.sts.get_caller_identity()["Account"]
    resources = [s["Resource"] for s in document["Statement"]]
    assert (
        resources[0]
        == f"arn:aws:iot:{REGION}:{account}:client/${{iot:Certificate.Subject.CommonName}}"
    )
    record = devices.load()
    assert (record.thing, record.cloud, record.region, record.slot) == (
        "device_01",
        "aws",
        REGION,
        1,
    )


def test_registering_twice_returns_the_existing_certificate(
    endpoint, real_keys, monkeypatch
) -> None:
    aws_cloud = cloud(endpoint)
    csr = certs.load_csr(csr_pem("device_01"))
    first = aws_cloud.register(csr)
    created = calls_to(monkeypatch, "create_certificate_from_csr")
    again = aws_cloud.register(csr)
    assert not again.created and again.certificate_id == first.certificate_id
    assert created == []
    assert len(aws_cloud.iot.list_certificates()["certificates"]) == 1


def test_a_name_bound_to_another_key_is_refused(endpoint, real_keys) -> None:
    aws_cloud = cloud(endpoint)
    aws_cloud.register(certs.load_csr(csr_pem("device_01")))
    with pytest.raises(errors.ThingTakenError, match="already exists in AWS IoT with another key"):
        aws_cloud.register(certs.load_csr(csr_pem("device_01")))
    assert len(aws_cloud.iot.list_certificates()["certificates"]) == 1


def test_a_failure_halfway_rolls_back(endpoint, real_keys, monkeypatch) -> None:
    aws_cloud = cloud(endpoint)
    fail(monkeypatch, "attach_thing_principal", "InternalFailureException")
    with pytest.raises(errors.AwsError, match="InternalFailureException"):
        aws_cloud.register(certs.load_csr(csr_pem("device_01")))
    assert aws_cloud.things() == []
    assert aws_cloud.iot.list_certificates()["certificates"] == []
    with pytest.raises(errors.KitError):
        devices.load("device_01")


def test_moto_certificate_without_the_chip_key_is_refused_and_removed(endpoint) -> None:
    aws_cloud = cloud(endpoint)  # moto as it is: an unrelated RSA key in the certificate
    with pytest.raises(errors.KeyMismatchError, match="does not carry your chip's key"):
        aws_cloud.register(certs.load_csr(csr_pem("0123C13DA283AFA5EE")))
    assert aws_cloud.iot.list_certificates()["certificates"] == []
    assert aws_cloud.things() == []


def test_unregister_and_remove_the_policy(endpoint, real_keys) -> None:
    aws_cloud = cloud(endpoint)
    for name in ("a1", "a2"):
        aws_cloud.register(certs.load_csr(csr_pem(name)))
    aws_cloud.unregister("a1")
    assert aws_cloud.things() == ["a2"]
    assert not aws_cloud.remove_policy_if_unused()  # a2 still uses it
    aws_cloud.unregister("a2")
    assert aws_cloud.iot.list_certificates()["certificates"] == []
    assert aws_cloud.remove_policy_if_unused()
    assert aws_cloud.iot.list_policies()["policies"] == []


def test_throttling_is_retried_with_backoff(endpoint, real_keys, monkeypatch) -> None:
    waits: list[float] = []
    aws_cloud = cloud(endpoint, sleep=waits.append)
    attempts = fail(monkeypatch, "create_thing", "ThrottlingException", times=3)
    registration = aws_cloud.register(certs.load_csr(csr_pem("device_01")))
    assert registration.thing == "device_01"
    assert attempts[0] == 4 and len(waits) == 3
    assert waits[0] < waits[1] < waits[2]


def test_throttling_that_does_not_stop_says_so(endpoint, real_keys, monkeypatch) -> None:
    aws_cloud = cloud(endpoint, sleep=lambda s: None)
    fail(monkeypatch, "create_thing", "ThrottlingException")
    with pytest.raises(errors.AwsError, match="still throttling"):
        aws_cloud.register(certs.load_csr(csr_pem("device_01")))
    assert aws_cloud.iot.list_certificates()["certificates"] == []


def test_a_class_registering_at_once_stays_under_15_per_second(
    endpoint, real_keys, monkeypatch
) -> None:
    seen = calls_to(monkeypatch, "create_thing")
    aws_cloud = cloud(endpoint)
    aws_cloud.ensure_policy()
    csrs = [certs.load_csr(csr_pem(f"student_{i:02}")) for i in range(36)]
    workers = [
        threading.Thread(
            target=lambda part: [aws_cloud.register(c) for c in part], args=(csrs[i::4],)
        )
        for i in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(aws_cloud.things()) == 36
    per_window = Counter(int((t - seen[0]) / 1.0) for t in seen)
    assert max(per_window.values()) <= 15, per_window
    busiest = max(sum(1 for t in seen if s <= t < s + 1) for s in seen)
    assert busiest <= 15


def test_access_denied_names_the_action(endpoint, real_keys, monkeypatch) -> None:
    fail(monkeypatch, "create_thing", "AccessDeniedException")
    with pytest.raises(errors.AwsError, match="denied iot:CreateThing"):
        cloud(endpoint).register(certs.load_csr(csr_pem("device_01")))


def test_expired_session(endpoint, real_keys, monkeypatch) -> None:
    fail(monkeypatch, "list_thing_principals", "ExpiredTokenException")
    with pytest.raises(errors.AwsError, match="session has expired"):
        cloud(endpoint).register(certs.load_csr(csr_pem("device_01")))


def test_quota_reached(endpoint, real_keys, monkeypatch) -> None:
    fail(monkeypatch, "create_thing", "LimitExceededException")
    with pytest.raises(errors.AwsError, match="quota was reached"):
        cloud(endpoint).register(certs.load_csr(csr_pem("device_01")))


def test_no_credentials(endpoint, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(errors.AwsError, match="No AWS credentials found"):
        cloud(endpoint).things()


def test_no_region(endpoint, monkeypatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(errors.AwsError, match="No AWS region is set"):
        AwsCloud(endpoint_url=endpoint)


def test_unknown_profile(endpoint) -> None:
    with pytest.raises(errors.AwsError, match="no AWS profile called 'nobody'"):
        AwsCloud(profile="nobody", region=REGION)


def test_unreachable_region_endpoint(endpoint) -> None:
    with pytest.raises(errors.AwsError, match="could not be reached"):
        AwsCloud(region=REGION, endpoint_url="http://127.0.0.1:9").things()


def root_names(pem: str) -> list[str]:
    """The common names of the certificates in `pem`, in order."""
    return [
        cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        for cert in x509.load_pem_x509_certificates(pem.encode())
    ]


def test_amazon_root_ca_1_and_3_are_shipped() -> None:
    # AWS's chain ends at Root CA 1 for RSA suites and Root CA 3 for ECC suites; fingerprints as
    # Amazon Trust Services publishes them.
    shipped = x509.load_pem_x509_certificates(aws.amazon_roots().encode())
    assert [cert.fingerprint(hashes.SHA256()).hex(":").upper() for cert in shipped] == [
        "8E:CD:E6:88:4F:3D:87:B1:12:5B:A3:1A:C3:FC:B1:3D:70:16:DE:7F:57:CC:90:4F:E1:CB:97:C6:AE:98:19:6E",
        "18:CE:6C:FE:7B:F1:4E:60:B2:E3:47:B8:DF:E8:68:CB:31:D0:2E:BB:3A:DA:27:15:69:F5:03:43:B4:6D:B3:A4",
    ]


def test_the_kit_command_with_aws(endpoint, real_keys, tmp_path, monkeypatch) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    (tmp_path / "csr.pem").write_text(csr_pem("device_01"))

    def kit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kit.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    done = kit("register", str(tmp_path / "csr.pem"), "--cloud", "aws", "--region", REGION)
    assert done.returncode == 0, done.stderr
    assert "Registered device_01 in the aws cloud." in done.stdout
    assert "-ats.iot.eu-west-1.amazonaws.com:8883" in done.stdout
    assert kit("things", "--cloud", "aws", "--region", REGION).stdout.split() == ["device_01"]
    done = kit("unregister", "--all", "--yes", "--cloud", "aws", "--region", REGION)
    assert done.stdout.strip() == "Removed device_01."
    aws_cloud = cloud(endpoint)
    assert aws_cloud.things() == [] and aws_cloud.iot.list_policies()["policies"] == []


def test_aws_observer_uses_a_signed_websocket_url(endpoint) -> None:
    observer = cloud(endpoint).observer()
    assert observer.host.endswith(f"-ats.iot.{REGION}.amazonaws.com") and observer.ws_port == 443
    assert observer.cert_file is None and observer.ws_path.startswith("/mqtt?X-Amz-Algorithm=")
    assert "X-Amz-Credential=testing%2F" in observer.ws_path
    assert root_names(observer.ca_file.read_text()) == ["Amazon Root CA 1", "Amazon Root CA 3"]
