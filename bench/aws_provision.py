"""Benchmark: `kit class provision --virtual` of 300 students on AWS IoT Core, played by moto.

moto's server runs in this process so its IoT backend can be patched: it signs each CSR's own
key (as AWS does) and answers ThrottlingException to a share of every API's calls, as AWS does
beyond 15 requests/s. Provisioning paces each API under 15/s and retries throttled calls with
backoff. Prints wall time against the ideal at 15 requests/s per API, calls and throttles per
API, and failures (must be zero).

    .venv/bin/python bench/aws_provision.py [--students 300] [--throttle 0.1]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from moto.core.exceptions import JsonRESTError
from moto.iot.models import IoTBackend
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from kit import certs
from kit.classroom import provision, server
from kit.cloud.aws import AwsCloud
from kit.places import using_home

REGION = "eu-west-1"
CN = x509.oid.NameOID.COMMON_NAME
PACED = ("create_certificate_from_csr", "create_thing", "attach_thing_principal", "attach_policy")


def patch_moto(throttle: float) -> tuple[Counter[str], Counter[str]]:
    """Sign real keys; throttle a share of each paced API's calls. Returns (calls, throttled)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(CN, "Fake AWS CA")])
    calls: Counter[str] = Counter()
    throttled: Counter[str] = Counter()
    chance = random.Random(7)
    lock = threading.Lock()

    def create_certificate_from_csr(self, csr, set_as_active):  # type: ignore[no-untyped-def]
        parsed = certs.load_csr(csr)
        now = time.time()
        import datetime

        issued = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, parsed.common_name)])
            )
            .issuer_name(name)
            .public_key(parsed.public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime.fromtimestamp(now - 60, datetime.timezone.utc))
            .not_valid_after(datetime.datetime.fromtimestamp(now + 86400, datetime.timezone.utc))
            .sign(key, hashes.SHA256())
        )
        pem = issued.public_bytes(serialization.Encoding.PEM).decode()
        return self.register_certificate(pem, None, set_as_active, "INACTIVE")

    IoTBackend.create_certificate_from_csr = create_certificate_from_csr
    for method in PACED:
        original = getattr(IoTBackend, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):  # type: ignore[no-untyped-def]
            with lock:
                calls[_method] += 1
                refuse = chance.random() < throttle
                if refuse:
                    throttled[_method] += 1
            if refuse:
                raise JsonRESTError("ThrottlingException", "Rate exceeded")
            return _original(self, *args, **kwargs)

        setattr(IoTBackend, method, counted)
    return calls, throttled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--throttle", type=float, default=0.1, help="share of calls throttled")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kit-aws-provision-")) / "home"
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(home.parent / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home.parent / "no-credentials"),
    )
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    calls, throttled = patch_moto(args.throttle)
    roster = home.parent / f"{home.name}-roster.csv"
    roster.write_text("name\n" + "".join(f"Student {i:03d}\n" for i in range(args.students)))
    with using_home(home):
        folder = server.class_folder()
        server.init(folder, "localhost")
        cloud = AwsCloud(region=REGION, endpoint_url=f"http://{host}:{port}")
        cloud.ensure_policy()
        begun = time.monotonic()
        boards_begun: list[float] = []

        def note(step: provision.Progress) -> None:
            if not boards_begun:
                boards_begun.append(time.monotonic())  # the accounts are made: boards next

        failure = ""
        try:
            done = provision.provision(folder, roster, cloud, virtual=True, progress=note)
            registered = len(done.registered)
        except Exception as error:  # reported in the table, not hidden
            failure, registered = f"{type(error).__name__}: {error}"[:200], 0
        ended = time.monotonic()
        wall = ended - begun
        accounts = (boards_begun or [ended])[0] - begun
        provision.remove_boards(folder)
        things = len(cloud.things())
    moto.stop()
    ideal = args.students / 15
    print(
        f"kit class provision --virtual of {args.students} students on AWS (moto), "
        f"{args.throttle:.0%} of calls throttled"
    )
    print(f"{'API':<30}{'calls':>8}{'throttled':>11}")
    for method in PACED:
        print(f"{method:<30}{calls[method]:>8}{throttled[method]:>11}")
    things_time = wall - accounts
    print(f"things: {things_time:.1f} s (ideal at 15 requests/s per API: {ideal:.1f} s)")
    print(f"accounts first (argon2 for {args.students} passwords): {accounts:.1f} s")
    failures = args.students - registered
    print(f"registered {registered}, things in the account {things}, failures {failures}")
    if failure:
        print(f"  failed: {failure}")


if __name__ == "__main__":
    main()
