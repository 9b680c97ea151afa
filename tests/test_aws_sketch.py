"""The AWS sketch and its config.h, compiled on the host: against stand-in Arduino headers (so a
typo or a wrong config.h symbol fails here, not in a classroom), and against BearSSL's own
library, whose X.509 engine must accept the local broker's chain with config.h's trust anchor."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from helpers import make_ca, new_key

from kit import config_h
from kit.cloud.local_ca import LocalCA

ROOT = Path(__file__).resolve().parent.parent
STUBS = Path(__file__).parent / "arduino_stubs"
SKETCH = ROOT / "sketches" / "AWS"


@pytest.fixture(scope="module")
def local_ca(tmp_path_factory) -> LocalCA:
    return LocalCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def device_certificate(local_ca) -> str:
    from helpers import csr_pem

    from kit import certs

    return local_ca.sign_csr(certs.load_csr(csr_pem("device_01")))


def sketch_folder(tmp_path: Path, config_text: str) -> Path:
    folder = tmp_path / "AWS"
    shutil.copytree(SKETCH, folder)
    (folder / "config.h").write_text(config_text)
    return folder


def compile_sketch(folder: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Compile AWS.ino as the Arduino IDE would (its warnings as errors), to an object file."""
    command = [
        "g++",
        "-std=gnu++11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wno-missing-field-initializers",
        "-I",
        str(STUBS),
        "-I",
        str(folder),
        "-x",
        "c++",
        "-c",
        str(folder / "AWS.ino"),
        "-o",
        str(tmp_path / "AWS.o"),
    ]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.mark.parametrize("cloud", ["aws", "local"])
def test_sketch_compiles_against_the_arduino_apis(
    tmp_path, local_ca, device_certificate, cloud
) -> None:
    if cloud == "aws":
        rendered = config_h.render(
            "Class", "password1", "abc-ats.iot.eu-west-1.amazonaws.com", device_certificate
        )
    else:
        rendered = config_h.render(
            "Class", "password1", "mylaptop.local", device_certificate, local_ca=local_ca.pem
        )
    folder = sketch_folder(tmp_path, rendered.text)
    built = compile_sketch(folder, tmp_path)
    assert built.returncode == 0, built.stderr


def test_sketch_catches_a_wrong_config_h_symbol(tmp_path, device_certificate) -> None:
    text = config_h.render("Class", "password1", "b.local", device_certificate).text
    folder = sketch_folder(tmp_path, text.replace("KEY_SLOT", "KEY_SLOTS"))
    built = compile_sketch(folder, tmp_path)
    assert built.returncode != 0 and "KEY_SLOT" in built.stderr


VALIDATOR = r"""
#include <bearssl.h>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>
#include "config.h"
#include "local_trust_anchor.h"

// argv[1]: the server name; argv[2...]: the chain as DER files, the server's certificate first.
int main(int argc, char** argv) {
  br_x509_minimal_context xc;
  br_x509_minimal_init_full(&xc, LOCAL_TRUST_ANCHORS, LOCAL_TRUST_ANCHORS_NUM);
  xc.vtable->start_chain(&xc.vtable, argv[1]);
  for (int i = 2; i < argc; i++) {
    std::ifstream in(argv[i], std::ios::binary);
    std::vector<unsigned char> der((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
    xc.vtable->start_cert(&xc.vtable, der.size());
    xc.vtable->append(&xc.vtable, der.data(), der.size());
    xc.vtable->end_cert(&xc.vtable);
  }
  unsigned error = xc.vtable->end_chain(&xc.vtable);
  printf("%u\n", error);
  return error == 0 ? 0 : 1;
}
"""


@pytest.fixture(scope="module")
def validator(tmp_path_factory, local_ca, device_certificate) -> Path:
    """A host program: config.h's trust anchor in BearSSL's X.509 engine (libbearssl-dev)."""
    tmp_path = tmp_path_factory.mktemp("bearssl")
    text = config_h.render(
        "Class", "password1", "localhost", device_certificate, local_ca=local_ca.pem
    ).text
    folder = sketch_folder(tmp_path, text)
    (folder / "validate.cpp").write_text(VALIDATOR)
    binary = tmp_path / "validate"
    built = subprocess.run(
        [
            "g++",
            "-std=gnu++11",
            "-I",
            str(folder),
            str(folder / "validate.cpp"),
            "-o",
            str(binary),
            "-lbearssl",
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    return binary


def chain_files(tmp_path: Path, pem_chain: bytes) -> list[str]:
    files = []
    for i, cert in enumerate(x509.load_pem_x509_certificates(pem_chain)):
        path = tmp_path / f"cert{i}.der"
        path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        files.append(str(path))
    return files


def test_bearssl_accepts_the_local_broker_for_its_name(validator, local_ca, tmp_path) -> None:
    cert_file, _ = local_ca.server_identity(["localhost", "127.0.0.1", "mylaptop.local"])
    chain = chain_files(tmp_path, cert_file.read_bytes())
    for name in ("localhost", "mylaptop.local"):
        done = subprocess.run([str(validator), name, *chain], capture_output=True, text=True)
        assert done.stdout.strip() == "0", f"{name}: BearSSL error {done.stdout}"


def test_bearssl_rejects_another_name(validator, local_ca, tmp_path) -> None:
    cert_file, _ = local_ca.server_identity(["localhost", "127.0.0.1", "mylaptop.local"])
    done = subprocess.run(
        [str(validator), "other.local", *chain_files(tmp_path, cert_file.read_bytes())],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "56"  # BR_ERR_X509_BAD_SERVER_NAME


def test_bearssl_rejects_a_certificate_from_another_ca(validator, tmp_path) -> None:
    other = make_ca("Someone else's CA")
    key = new_key()
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(other.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(other.key, hashes.SHA256())
    )
    chain = server.public_bytes(serialization.Encoding.PEM) + other.pem.encode()
    done = subprocess.run(
        [str(validator), "localhost", *chain_files(tmp_path, chain)], capture_output=True, text=True
    )
    assert done.stdout.strip() == "62"  # BR_ERR_X509_NOT_TRUSTED
