"""The AWS sketch and its config.h, compiled on the host: against stand-in Arduino headers (so a
typo or a wrong config.h symbol fails here, not in a classroom), and against BearSSL's own
library, whose X.509 engine must accept the local broker's chain with config.h's trust anchor."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from helpers import make_ca, new_key

from kit import bearssl_anchors, config_h
from kit.cloud.local_ca import LocalCA
from kit.sim.aws_firmware import led_message
from kit.trust import amazon_roots

ROOT = Path(__file__).resolve().parent.parent
STUBS = Path(__file__).parent / "arduino_stubs"
SKETCH = ROOT / "sketches" / "AWS"
AWS_ENDPOINT = "abc-ats.iot.eu-west-1.amazonaws.com"


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


def gxx(folder: Path, *rest: str) -> subprocess.CompletedProcess[str]:
    """g++ on the sketch in `folder` as the Arduino IDE runs it (its warnings as errors), with
    the stand-in headers; `rest` says what to build."""
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
        *rest,
    ]
    return subprocess.run(command, capture_output=True, text=True)


def local_sketch(tmp_path_factory, label: str, broker: str, certificate, ca) -> tuple[Path, Path]:
    """A temporary folder, and the sketch in it with a config.h for a local broker `broker`."""
    tmp_path = tmp_path_factory.mktemp(label)
    text = config_h.render("Class", "password1", broker, certificate, local_ca=ca.pem).text
    return tmp_path, sketch_folder(tmp_path, text)


def compile_sketch(folder: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Compile AWS.ino to an object file."""
    return gxx(folder, "-c", str(folder / "AWS.ino"), "-o", str(tmp_path / "AWS.o"))


@pytest.mark.parametrize("cloud", ["aws", "local"])
def test_sketch_compiles_against_the_arduino_apis(
    tmp_path, local_ca, device_certificate, cloud
) -> None:
    if cloud == "aws":
        rendered = config_h.render("Class", "password1", AWS_ENDPOINT, device_certificate)
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
#include <cstring>
#include "config.h"
#include "amazon_trust_anchors.h"
#include "local_trust_anchor.h"

// The sketch's anchors: the local CA's (KIT_LOCAL_CA 1) or Amazon's (0), as AWS.ino picks them.
#if KIT_LOCAL_CA
#define ANCHORS LOCAL_TRUST_ANCHORS
#define ANCHORS_NUM LOCAL_TRUST_ANCHORS_NUM
#else
#define ANCHORS AMAZON_TRUST_ANCHORS
#define ANCHORS_NUM AMAZON_TRUST_ANCHORS_NUM
#endif

// argv[1]: the server name ("-": none checked); argv[2...]: the chain as DER files, the
// server's certificate first.
int main(int argc, char** argv) {
  br_x509_minimal_context xc;
  br_x509_minimal_init_full(&xc, ANCHORS, ANCHORS_NUM);
  xc.vtable->start_chain(&xc.vtable, std::strcmp(argv[1], "-") == 0 ? nullptr : argv[1]);
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


def build_validator(tmp_path: Path, folder: Path) -> Path:
    """A host program: the sketch's trust anchors in BearSSL's X.509 engine (libbearssl-dev)."""
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


@pytest.fixture(scope="module")
def validator(tmp_path_factory, local_ca, device_certificate) -> Path:
    """BearSSL with config.h's local CA as the board's anchor."""
    tmp_path, folder = local_sketch(
        tmp_path_factory, "bearssl", "localhost", device_certificate, local_ca
    )
    return build_validator(tmp_path, folder)


@pytest.fixture(scope="module")
def aws_validator(tmp_path_factory, device_certificate) -> Path:
    """BearSSL with the anchors the sketch uses on AWS IoT (amazon_trust_anchors.h)."""
    tmp_path = tmp_path_factory.mktemp("bearssl-aws")
    text = config_h.render("Class", "password1", AWS_ENDPOINT, device_certificate).text
    return build_validator(tmp_path, sketch_folder(tmp_path, text))


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


def validate(validator: Path, name: str, chain: list[str]) -> str:
    """BearSSL's answer for `chain` and server `name`: "0", or its error code."""
    done = subprocess.run([str(validator), name, *chain], capture_output=True, text=True)
    return done.stdout.strip()


def test_the_amazon_anchors_are_written_from_the_shipped_roots() -> None:
    header = SKETCH / bearssl_anchors.HEADER_NAME
    assert header.read_text() == bearssl_anchors.amazon_header(), (
        "sketches/AWS/amazon_trust_anchors.h differs from kit/AmazonRootCAs.pem: run "
        "`python tools/render_trust_anchors.py`"
    )


@pytest.mark.parametrize("root", ["Amazon Root CA 1", "Amazon Root CA 3"])
def test_bearssl_on_aws_trusts_each_amazon_root(aws_validator, tmp_path, root) -> None:
    # AWS ends its chain at Root CA 1 (RSA suites) or Root CA 3 (ECC suites). A root's own
    # self-signature verifies only if the anchor's name and key bytes are exactly right.
    found = [
        cert
        for cert in x509.load_pem_x509_certificates(amazon_roots().encode())
        if cert.subject.rfc4514_string() == f"CN={root},O=Amazon,C=US"
    ]
    assert len(found) == 1
    pem = found[0].public_bytes(serialization.Encoding.PEM)
    assert validate(aws_validator, "-", chain_files(tmp_path, pem)) == "0"


def test_bearssl_on_aws_refuses_a_look_alike_root(aws_validator, tmp_path) -> None:
    # Same name as Amazon Root CA 3, another key: an attacker's CA gets nowhere.
    import datetime as dt

    from cryptography.hazmat.primitives import hashes

    root3 = x509.load_pem_x509_certificates(amazon_roots().encode())[1]
    key = new_key()
    now = dt.datetime.now(dt.timezone.utc)
    fake = (
        x509.CertificateBuilder()
        .subject_name(root3.subject)
        .issuer_name(root3.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    chain = chain_files(tmp_path, fake.public_bytes(serialization.Encoding.PEM))
    assert validate(aws_validator, "-", chain) != "0"


def test_bearssl_on_aws_refuses_the_local_broker(aws_validator, local_ca, tmp_path) -> None:
    cert_file, _ = local_ca.server_identity(["localhost"])
    chain = chain_files(tmp_path, cert_file.read_bytes())
    assert validate(aws_validator, "localhost", chain) == "62"  # BR_ERR_X509_NOT_TRUSTED


# The sketch running on the host (tests/arduino_stubs/aws_host.cpp stands in for the network,
# the sensor and the LED), fed LED messages as ArduinoMqttClient hands them to its callback.

LED_TOPIC = "things/device_01/led"
BOARD_HEAP = 10 * 1024  # what a SAMD21 has left for heap and stack with this sketch


@pytest.fixture(scope="module")
def host_sketch(tmp_path_factory, local_ca, device_certificate) -> Path:
    tmp_path, folder = local_sketch(
        tmp_path_factory, "aws-host", "mylaptop.local", device_certificate, local_ca
    )
    binary = tmp_path / "aws-sketch"
    built = gxx(
        folder, str(folder / "AWS.ino"), "-x", "c++", str(STUBS / "aws_host.cpp"), "-o", str(binary)
    )
    assert built.returncode == 0, built.stderr
    return binary


@dataclass
class HostMessage:
    """What the callback did with one message: bytes it read, memory it held, acknowledged."""

    size: int
    read: int
    heap: int
    acknowledged: bool


@dataclass
class HostRun:
    returncode: int
    serial: list[str]
    led_lines: list[str]  # the serial lines about the LED
    analog_writes: list[tuple[int, int]]  # (pin, value)
    published: list[tuple[str, int, str]]  # (topic, QoS, payload)
    messages: list[HostMessage]
    events: list[str]


def run_host(binary: Path, tmp_path: Path, messages: list[tuple[bytes, int] | bytes]) -> HostRun:
    """Run the sketch until it has had `messages` on its LED topic: payloads, or (payload, size)
    for one whose connection drops after the payload's bytes, before `size` arrived."""
    script = tmp_path / "messages.bin"
    with script.open("wb") as out:
        for message in messages:
            payload, size = message if isinstance(message, tuple) else (message, len(message))
            out.write(f"{LED_TOPIC} {size} {len(payload)}\n".encode() + payload)
    log = tmp_path / "events.log"
    done = subprocess.run(
        [str(binary)],
        env={
            **os.environ,
            "STUB_SERIAL_FD": "1",
            "STUB_MQTT_SCRIPT": str(script),
            "STUB_LOG": str(log),
            "STUB_HEAP_LIMIT": str(BOARD_HEAP),
        },
        capture_output=True,
        timeout=60,
    )
    serial = done.stdout.decode("latin-1").split("\r\n")
    events = log.read_text().splitlines()
    run = HostRun(
        done.returncode, serial, [s for s in serial if s.startswith("LED: ")], [], [], [], events
    )
    acknowledged = 0
    for event in events:
        kind, *fields = event.split(" ", 3)
        if kind == "analogWrite":
            run.analog_writes.append((int(fields[0]), int(fields[1])))
        elif kind == "publish":
            run.published.append((fields[0], int(fields[1]), fields[2] if len(fields) > 2 else ""))
        elif kind == "puback":
            acknowledged += 1
        elif kind == "message":
            words = event.split()
            run.messages.append(
                HostMessage(int(words[2]), int(words[4]), int(words[6]), acknowledged > 0)
            )
            acknowledged = 0
    return run


def test_a_128_kb_led_message_is_read_out_and_ignored(host_sketch, tmp_path) -> None:
    huge = b"9" * (128 * 1024)  # the most AWS IoT delivers; its first digits read as 100
    run = run_host(host_sketch, tmp_path, [huge, b"40"])
    assert run.returncode == 0, run.events[-3:]
    assert run.led_lines == [
        "LED: ignored a message of 131072 bytes (a brightness is 0-100)",
        "LED: 40%",
    ]
    # Read to its last byte, so the library acknowledged it and the next message is whole.
    big, forty = run.messages
    assert (big.size, big.read, big.acknowledged) == (131072, 131072, True)
    assert (forty.size, forty.read, forty.acknowledged) == (2, 2, True)
    # The handler held no more than the topic's copy and a few bytes, whatever the size.
    assert big.heap <= 256 and forty.heap <= 256, (big.heap, forty.heap)
    assert run.analog_writes == [(5, 102)]  # only the 40 % (102 of 255) reached the LED
    assert run.published == [(LED_TOPIC + "/state", 1, "40")]


def test_a_message_cut_short_is_ignored_and_the_next_applies(host_sketch, tmp_path) -> None:
    # The connection drops 2000 bytes into a 128 KB message: the library's read() returns -1
    # from then on while available() still counts the bytes that never came.
    run = run_host(host_sketch, tmp_path, [(b"9" * 2000, 128 * 1024), b"40"])
    assert run.returncode == 0, run.events[-3:]
    assert run.led_lines == [
        "LED: ignored a message cut short (2000 of 131072 bytes arrived)",
        "LED: 40%",
    ]
    assert "MQTT: connected" in run.serial[run.serial.index(run.led_lines[0]) + 2]
    assert run.messages[0].heap <= 256
    assert run.analog_writes == [(5, 102)]
    assert run.published == [(LED_TOPIC + "/state", 1, "40")]


# A brightness is a whole number 0-100, whitespace around it allowed, in at most 8 bytes.
LED_CASES = [
    (b"100", "LED: 100%"),
    (b"0", "LED: 0%"),
    (b"4", "LED: 4%"),
    (b" 40\r\n", "LED: 40%"),
    (b"\t007\n", "LED: 7%"),
    (b"  100   ", "LED: 100%"),  # 8 bytes: the most the board keeps
    (b"  100    ", "LED: ignored a message of 9 bytes (a brightness is 0-100)"),
    (b"101", "LED: ignored a message of 3 bytes (a brightness is 0-100)"),
    (b"-1", "LED: ignored a message of 2 bytes (a brightness is 0-100)"),
    (b"abc", "LED: ignored a message of 3 bytes (a brightness is 0-100)"),
    (b"", "LED: ignored a message of 0 bytes (a brightness is 0-100)"),
    (b"x", "LED: ignored a message of 1 byte (a brightness is 0-100)"),
    (b"40abc", "LED: ignored a message of 5 bytes (a brightness is 0-100)"),
    (b"4 0", "LED: ignored a message of 3 bytes (a brightness is 0-100)"),
    (b"+40", "LED: ignored a message of 3 bytes (a brightness is 0-100)"),
    (b"40.0", "LED: ignored a message of 4 bytes (a brightness is 0-100)"),
    (b"40\x00", "LED: ignored a message of 3 bytes (a brightness is 0-100)"),
    (b"\xff", "LED: ignored a message of 1 byte (a brightness is 0-100)"),
    (b"99999999", "LED: ignored a message of 8 bytes (a brightness is 0-100)"),
]


def test_led_messages_on_the_sketch_and_the_virtual_firmware(host_sketch, tmp_path) -> None:
    payloads = [payload for payload, _ in LED_CASES]
    run = run_host(host_sketch, tmp_path, [*payloads, b"40"])
    assert run.returncode == 0, run.events[-3:]
    expected = [line for _, line in LED_CASES] + ["LED: 40%"]
    assert run.led_lines == expected
    assert all(m.read == m.size and m.acknowledged for m in run.messages)
    applied = [int(line[5:-1]) for line in expected if not line.startswith("LED: ignored")]
    assert run.analog_writes == [(5, value * 255 // 100) for value in applied]
    assert run.published == [(LED_TOPIC + "/state", 1, str(value)) for value in applied]
    # The virtual board prints the same line for each, and applies the same values.
    twin = [led_message(payload) for payload in [*payloads, b"40"]]
    assert [line for _, line in twin] == expected
    assert [value for value, _ in twin if value is not None] == applied


def test_the_virtual_firmware_gives_the_sketchs_reasons() -> None:
    # The same CONNACK code reads the same on a real board and on the virtual one.
    from kit.sim.aws_firmware import MQTT_REASONS

    sketch = (ROOT / "sketches" / "AWS" / "AWS.ino").read_text()
    body = sketch[sketch.index("const char* mqttReason") :]
    body = body[: body.index("default:")]
    cases = {int(code): text for code, text in re.findall(r'case (-?\d+): return "([^"]+)";', body)}
    shared = set(cases) & set(MQTT_REASONS)
    assert shared >= {2, 5}
    assert all(cases[code] == MQTT_REASONS[code] for code in shared), (cases, MQTT_REASONS)
