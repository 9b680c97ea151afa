"""Signed WebSocket URLs for AWS IoT: how a notebook watches devices without a device identity.

AWS IoT accepts MQTT over WebSocket (`wss://<endpoint>/mqtt`) signed with Signature Version 4
(service `iotdevicegateway`) from the user's own AWS credentials. With temporary credentials,
AWS IoT wants the session token appended after signing, not signed with the rest.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from urllib.parse import quote

SERVICE = "iotdevicegateway"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signed_path(
    endpoint: str,
    region: str,
    access_key: str,
    secret_key: str,
    session_token: str | None = None,
    now: datetime | None = None,
    expires: int = 3600,
) -> str:
    """The path and query (`/mqtt?X-Amz-...`) of a SigV4-signed AWS IoT WebSocket URL."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/{region}/{SERVICE}/aws4_request"
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{access_key}/{scope}",
        "X-Amz-Date": stamp,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
    }
    query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()))
    canonical = "\n".join(["GET", "/mqtt", query, f"host:{endpoint}", "", "host", EMPTY_SHA256])
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    )
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), day)
    for part in (region, SERVICE, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    path = f"/mqtt?{query}&X-Amz-Signature={signature}"
    if session_token:
        path += f"&X-Amz-Security-Token={_encode(session_token)}"
    return path
