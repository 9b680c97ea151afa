"""Signed WebSocket URLs for AWS IoT: how a notebook watches devices without a device identity.

AWS IoT accepts MQTT over WebSocket (`wss://<endpoint>/mqtt`) signed with Signature Version 4
(service `iotdevicegateway`) from the user's own AWS credentials; botocore does the signing. With
temporary credentials, AWS IoT wants the session token appended after signing, not signed with
the rest, so the token is left out of what botocore signs.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "iotdevicegateway"


def signed_path(
    endpoint: str,
    region: str,
    access_key: str,
    secret_key: str,
    session_token: str | None = None,
    expires: int = 3600,
) -> str:
    """The path and query (`/mqtt?X-Amz-...`) of a SigV4-signed AWS IoT WebSocket URL."""
    request = AWSRequest(method="GET", url=f"https://{endpoint}/mqtt")
    SigV4QueryAuth(Credentials(access_key, secret_key), SERVICE, region, expires).add_auth(request)
    url = urlsplit(str(request.url))  # set above (the stubs allow None)
    path = f"{url.path}?{url.query}"
    if session_token:
        path += f"&X-Amz-Security-Token={quote(session_token, safe='-_.~')}"
    return path
