"""AWS IoT Core played by moto's server, in this process so its IoT backend can be patched.

Import the fixtures into a test module to use them: `moto_server` (one per module), `endpoint`
(a clean account with fake credentials and no AWS configuration from the machine) and
`real_keys` (moto signs the CSR's own key, as AWS does).
"""

from __future__ import annotations

import urllib.request

import pytest
from helpers import make_ca
from moto.iot.models import IoTBackend
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from kit import certs

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def endpoint(moto_server, monkeypatch, tmp_path):
    """A clean moto account, fake credentials, and no AWS config from the machine."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return moto_server


@pytest.fixture
def real_keys(monkeypatch):
    """Make moto sign the CSR's own key, with its subject kept as the chip wrote it."""
    signer = make_ca("Fake AWS CA")

    def create_certificate_from_csr(self, csr, set_as_active):
        parsed = certs.load_csr(csr)
        pem = signer.issue(parsed.public_key, parsed.common_name)
        return self.register_certificate(pem, None, set_as_active, "INACTIVE")

    monkeypatch.setattr(IoTBackend, "create_certificate_from_csr", create_certificate_from_csr)
