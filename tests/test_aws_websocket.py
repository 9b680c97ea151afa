"""The AWS IoT WebSocket URL: botocore's SigV4 query signing of /mqtt, with a session token
appended after signing (as AWS IoT wants it)."""

from __future__ import annotations

from datetime import datetime, timezone
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kit.aws_websocket import signed_path

ENDPOINT = "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
WHEN = datetime(2026, 11, 30, 12, 34, 56, tzinfo=timezone.utc)


def botocore_signed(access_key: str, secret_key: str, token: str | None) -> str:
    request = AWSRequest(method="GET", url=f"https://{ENDPOINT}/mqtt")
    auth = SigV4QueryAuth(
        Credentials(access_key, secret_key, token), "iotdevicegateway", "eu-west-1"
    )
    # botocore reads the clock once per signature (get_current_datetime): pin it.
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN):
        auth.add_auth(request)
    return request.url


def signed_at_when(*args: str, **kwargs: str) -> str:
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN):
        return signed_path(*args, **kwargs)


@pytest.mark.parametrize("secret", ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "s3cr+t/=x"])
def test_signature_equals_botocore(secret: str) -> None:
    ours = signed_at_when(ENDPOINT, "eu-west-1", "AKIDEXAMPLE", secret)
    assert ours.startswith("/mqtt?")
    theirs = botocore_signed("AKIDEXAMPLE", secret, None)
    ours_q, theirs_q = parse_qs(urlsplit(ours).query), parse_qs(urlsplit(theirs).query)
    assert ours_q == theirs_q
    assert ours_q["X-Amz-Date"] == ["20261130T123456Z"]
    assert ours_q["X-Amz-Credential"] == [
        "AKIDEXAMPLE/20261130/eu-west-1/iotdevicegateway/aws4_request"
    ]


def test_session_token_is_appended_after_signing() -> None:
    plain = signed_at_when(ENDPOINT, "eu-west-1", "AKID", "secret")
    with_token = signed_at_when(ENDPOINT, "eu-west-1", "AKID", "secret", session_token="tok/en+=")
    assert with_token == plain + "&X-Amz-Security-Token=tok%2Fen%2B%3D"
