"""config.h: rendered values compile (g++ -std=c++11) to exactly the bytes that went in."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from helpers import csr_pem, new_key, private_key_pem, serial_monitor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit import config_h, cxx, errors
from kit.places import checkout

STRINGS = ("WIFI_SSID", "WIFI_PASS", "BROKER_HOST", "DEVICE_NAME", "DEVICE_CERTIFICATE")
NUMBERS = ("BROKER_PORT", "KEY_SLOT", "LED_PIN")


def compile_and_run(
    tmp_path: Path, headers: list[str], extras: list[str] = ()
) -> tuple[list[dict[str, str]], list[str], str]:
    """Compile a program that includes each header in its own namespace and prints every value
    as hex; return the values per header, the extra literals' hex, and g++'s warnings."""
    program = ["#include <cstdio>", "#include <cstddef>"]
    for i, text in enumerate(headers):
        # g++ treats identical files as one under #pragma once: keep each header distinct.
        (tmp_path / f"c{i}.h").write_text(f"// header {i}\n{text}", encoding="utf-8")
        program.append(f'namespace c{i} {{\n#include "c{i}.h"\n}}')
    for i, literal in enumerate(extras):
        program.append(f"const char EXTRA_{i}[] = {literal};")
    program.append(
        "static void hex(const char* n, const char* s, size_t len) {"
        ' printf("%s=", n); for (size_t i = 0; i < len; i++) printf("%02x", (unsigned char)s[i]);'
        ' printf("\\n"); }'
    )
    program.append("int main() {")
    for i in range(len(headers)):
        for name in STRINGS:
            program.append(f'  hex("{name}", c{i}::{name}, sizeof(c{i}::{name}) - 1);')
        for name in NUMBERS:
            program.append(f'  printf("{name}=%d\\n", (int)c{i}::{name});')
        program.append('  printf("---\\n");')
    for i in range(len(extras)):
        program.append(f'  hex("EXTRA", EXTRA_{i}, sizeof(EXTRA_{i}) - 1);')
    program.append("  return 0;\n}")
    source = tmp_path / "main.cpp"
    source.write_text("\n".join(program), encoding="utf-8")
    binary = tmp_path / "main"
    built = subprocess.run(
        ["g++", "-std=c++11", "-Wall", "-Wextra", "-o", str(binary), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    configs: list[dict[str, str]] = [{}]
    extra_values = []
    for line in out.splitlines():
        if line == "---":
            configs.append({})
            continue
        name, _, value = line.partition("=")
        if name == "EXTRA":
            extra_values.append(value)
        else:
            configs[-1][name] = value
    return configs[: len(headers)], extra_values, built.stderr


def assert_compiled_equals(compiled: dict[str, str], config: config_h.SketchConfig) -> None:
    expected = {
        "WIFI_SSID": config.ssid,
        "WIFI_PASS": config.password,
        "BROKER_HOST": config.broker,
        "DEVICE_NAME": config.device_name,
        "DEVICE_CERTIFICATE": config.certificate,
    }
    for name, value in expected.items():
        assert compiled[name] == value.encode("utf-8").hex(), name
    assert int(compiled["BROKER_PORT"]) == config.port
    assert int(compiled["KEY_SLOT"]) == config.slot
    assert int(compiled["LED_PIN"]) == config.led_pin


@pytest.fixture(scope="module")
def certificates():
    """Device certificates for a few names, issued by a throwaway CA."""
    from helpers import make_ca

    ca = make_ca()
    return [
        ca.issue(new_key().public_key(), name)
        for name in ("0123C13DA283AFA5EE", "device_01", "a_b-c")
    ]


def test_renders_compiles_and_round_trips(tmp_path: Path, certificates) -> None:
    rendered = config_h.render(
        "Classroom", "s3cret pass!", "abc-ats.iot.eu-west-1.amazonaws.com", certificates[1]
    )
    [compiled], _, warnings = compile_and_run(tmp_path, [rendered.text])
    assert_compiled_equals(compiled, rendered.config)
    assert warnings == ""
    assert rendered.config.device_name == "device_01"
    assert rendered.config.port == 8883 and rendered.config.slot == 0
    assert config_h.parse(rendered.text) == rendered.config
    assert rendered.changes == ()


HOSTILE = [
    '"',
    "\\",
    "?",
    "??=",
    "??/",
    "??'",
    "\\n",
    "*/",
    "//",
    "/*",
    'R"(',
    ')"',
    "\t",
    "é",
    "🙂",
    "\x7f",
    "\x01",
]


def hostile_text(min_bytes: int, max_bytes: int) -> st.SearchStrategy[str]:
    pieces = st.one_of(
        st.sampled_from(HOSTILE),
        st.text(
            st.characters(blacklist_characters="\x00\n\r", blacklist_categories=("Cs",)), max_size=4
        ),
    )
    return (
        st.lists(pieces, max_size=20)
        .map("".join)
        .filter(lambda s: min_bytes <= len(s.encode("utf-8")) <= max_bytes)
    )


label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hosts = (
    st.lists(label, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda h: not h.split(".")[-1].isdigit())
)
# WPA2 passphrases are printable ASCII: the hostile pieces a password can hold are C's own.
ascii_pieces = st.one_of(
    st.sampled_from([h for h in HOSTILE if h.isascii() and h.isprintable()]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=4),
)
passwords = st.one_of(
    st.just(""),
    st.lists(ascii_pieces, max_size=20).map("".join).filter(lambda s: 8 <= len(s) <= 63),
    st.text("0123456789abcdefABCDEF", min_size=64, max_size=64),
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    data=st.lists(
        st.tuples(
            hostile_text(1, 32),
            passwords,
            hosts,
            st.integers(0, 2),
            st.integers(1, 65535),
            st.integers(0, 4),
        ),
        min_size=1,
        max_size=8,
    ),
    raw=st.lists(
        st.text(st.characters(blacklist_characters="\x00\r", blacklist_categories=("Cs",))),
        max_size=4,
    ),
)
def test_hostile_values_compile_byte_for_byte(tmp_path_factory, certificates, data, raw) -> None:
    tmp_path = tmp_path_factory.mktemp("gxx")
    rendered = [
        config_h.render(ssid, password, host, certificates[c], port=port, slot=slot)
        for ssid, password, host, c, port, slot in data
    ]
    strings = [*raw, ')PEM" and )PEM1"']
    compiled, extras, _ = compile_and_run(
        tmp_path,
        [r.text for r in rendered],
        [cxx.raw_string_literal(s) for s in strings] + [cxx.string_literal(s) for s in strings],
    )
    for values, r in zip(compiled, rendered, strict=True):
        assert_compiled_equals(values, r.config)
        assert config_h.parse(r.text) == r.config
    assert extras == [s.encode("utf-8").hex() for s in strings * 2]


def test_local_ca_round_trips_and_compiles(tmp_path: Path, certificates) -> None:
    from kit.cloud.local_ca import LocalCA

    ca = LocalCA(tmp_path / "ca")
    rendered = config_h.render(
        "wifi", "password1", "mylaptop.local", certificates[1], led_pin=6, local_ca=ca.pem
    )
    assert rendered.config.local_ca == ca.pem and rendered.config.led_pin == 6
    assert "#define KIT_LOCAL_CA 1" in rendered.text
    assert config_h.parse(rendered.text) == rendered.config
    [compiled], _, warnings = compile_and_run(tmp_path, [rendered.text])
    assert_compiled_equals(compiled, rendered.config)
    assert warnings == ""
    plain = config_h.render("wifi", "password1", "b.local", certificates[1])
    assert "#define KIT_LOCAL_CA 0" in plain.text and config_h.parse(plain.text).local_ca == ""


@pytest.mark.parametrize("pin", [-1, 22, "5"])
def test_bad_led_pins_are_refused(certificates, pin) -> None:
    with pytest.raises(errors.ConfigError, match="LED pin"):
        config_h.render("wifi", "", "b.local", certificates[0], led_pin=pin)


def test_a_device_certificate_is_not_a_local_ca(certificates) -> None:
    with pytest.raises(errors.ConfigError, match="not a CA certificate"):
        config_h.render("wifi", "", "b.local", certificates[0], local_ca=certificates[1])


def test_broker_url_is_normalised_and_the_changes_listed(certificates) -> None:
    rendered = config_h.render(
        "wifi", "", " https://ABC-ats.iot.eu-west-1.amazonaws.com:8883/ ", certificates[0]
    )
    assert rendered.config.broker == "abc-ats.iot.eu-west-1.amazonaws.com"
    assert rendered.config.port == 8883
    changes = " | ".join(rendered.changes)
    for words in (
        "removed spaces",
        "removed 'https://'",
        "took port 8883",
        "'/' at the end",
        "lower case",
    ):
        assert words in changes


def test_port_from_url_conflicting_with_port_is_refused(certificates) -> None:
    with pytest.raises(errors.ConfigError, match="says port 1883 but the port is set to 8883"):
        config_h.render("wifi", "", "mqtt://broker.local:1883", certificates[0], port=8883)


def test_local_broker_on_another_port(certificates) -> None:
    rendered = config_h.render("wifi", "", "mylaptop.local:18883", certificates[0])
    assert (rendered.config.broker, rendered.config.port) == ("mylaptop.local", 18883)


@pytest.mark.parametrize(
    ("broker", "port", "words"),
    [
        ("192.168.1.20", None, "is an IP address"),
        ("https://10.0.0.1:8883", None, "is an IP address"),
        ("[::1]:8883", None, "is an IP address"),
        ("fe80::1", None, "is an IP address"),
        ("my_laptop.local", None, "has '_', which a host name cannot contain"),
        ("bad..name", None, "empty part"),
        ("-x.local", None, "'-' at the start"),
        ("", None, "broker address is empty"),
        ("abc-ats.iot.eu-west-1.amazonaws.com", 443, "port 8883 only"),
        ("broker.local", 70000, "from 1 to 65535"),
        ("user@broker.local", None, "user name"),
        ("broker.local:port", None, "is not a port number"),
        ("broker.local:١٢٣", None, "is not a port number"),
        ("broker.local:+123", None, "is not a port number"),
        ("broker.local:70000", None, "is not a port number"),
    ],
)
def test_bad_brokers_are_refused(certificates, broker, port, words) -> None:
    with pytest.raises(errors.ConfigError, match=re.escape(words)):
        config_h.render("wifi", "", broker, certificates[0], port=port)


@pytest.mark.parametrize(
    ("ssid", "password", "words"),
    [
        ("", "", "WiFi name (SSID) is empty"),
        ("x" * 33, "", "33 bytes long; WiFi names have at most 32"),
        ("é" * 17, "", "34 bytes long"),
        ("with\nbreak", "", "line break"),
        ("nul\x00", "", "NUL"),
        ("wifi", "short", "has 5 characters; a WPA2 password has 8 to 63"),
        ("wifi", "x" * 64, "must be a hex key"),
        ("wifi", "x" * 65, "has 65 characters"),
        ("wifi", "pass\nword", "line break"),
        ("wifi", "pass\tword", "has a tab in it"),
        ("wifi", "pass\x1bword", "has a control character (such as Esc)"),
        ("wifi", "passwörd1", "beyond plain ASCII"),
        ("wifi", "€" * 22, "beyond plain ASCII"),
        ("wifi", "€" * 5, "beyond plain ASCII"),
        ("wifi", "1234567", "has 7 characters"),
    ],
)
def test_bad_wifi_values_are_refused(certificates, ssid, password, words) -> None:
    with pytest.raises(errors.ConfigError, match=re.escape(words)):
        config_h.render(ssid, password, "broker.local", certificates[0])


@pytest.mark.parametrize("password", ["", "12345678", "x" * 63, "0123456789abcdef" * 4])
def test_accepted_passwords(certificates, password) -> None:
    assert (
        config_h.render("wifi", password, "broker.local", certificates[0]).config.password
        == password
    )


@pytest.mark.parametrize("slot", [-1, 5, "0", True])
def test_bad_slots_are_refused(certificates, slot) -> None:
    with pytest.raises(errors.ConfigError, match="0, 1, 2, 3 or 4"):
        config_h.render("wifi", "", "broker.local", certificates[0], slot=slot)


def test_csr_or_key_where_the_certificate_goes() -> None:
    with pytest.raises(errors.WrongPemKindError):
        config_h.render("wifi", "", "broker.local", csr_pem("device_01"))
    with pytest.raises(errors.PrivateKeyPastedError):
        config_h.render("wifi", "", "broker.local", private_key_pem())


def test_pasted_certificate_is_tidied(certificates) -> None:
    rendered = config_h.render("wifi", "", "broker.local", serial_monitor(certificates[0]))
    assert rendered.config.certificate == certificates[0]
    assert any("tidied the certificate" in c for c in rendered.changes)


def test_certificate_without_a_usable_name_is_refused() -> None:
    from helpers import make_ca

    ca = make_ca()
    with pytest.raises(errors.ConfigError, match="common name cannot be used"):
        config_h.render(
            "wifi", "", "broker.local", ca.issue(new_key().public_key(), "AWS IoT Certificate")
        )


def test_password_is_masked_for_display(certificates) -> None:
    rendered = config_h.render("wifi", "hunter2!hunter2", "broker.local", certificates[0])
    assert "hunter2" in rendered.text
    for shown in (rendered.masked_text, str(rendered), rendered._repr_html_(), repr(rendered)):
        assert "hunter2" not in shown
    assert 'WIFI_PASS[] = "********";' in rendered.masked_text


def test_write_is_private_and_replaces_atomically(tmp_path: Path, certificates) -> None:
    target = tmp_path / "AWS" / "config.h"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o644)
    rendered = config_h.render("wifi", "password1", "broker.local", certificates[0])
    assert rendered.write(target) == target
    assert target.read_text() == rendered.text
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["config.h"]


def test_failed_write_keeps_the_old_file(tmp_path: Path, certificates, monkeypatch) -> None:
    target = tmp_path / "config.h"
    target.write_text("old")

    def broken_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_disk)
    with pytest.raises(OSError):
        config_h.render("wifi", "password1", "broker.local", certificates[0]).write(target)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.h"]


def test_default_path_is_git_ignored() -> None:
    path = config_h.default_path()
    assert path == checkout() / "sketches" / "AWS" / "config.h"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=checkout())
    assert ignored.returncode == 0


def test_committed_example_is_current_and_secret_free() -> None:
    example = (checkout() / "sketches" / "AWS" / "config.h.example").read_text()
    assert example == config_h.example_text()
    declared = cxx.declarations(example)
    assert set(declared) == set(config_h.NAMES)
    assert declared["WIFI_PASS"] == b""


def test_parse_reads_a_hand_edited_file(certificates) -> None:
    text = config_h.render("Class WiFi", "password1", "broker.local", certificates[1]).text
    edited = text.replace('"Class WiFi";', '"Class" /* edited */ " WiFi";  // the room\'s network')
    edited = edited.replace("KEY_SLOT = 0;", "KEY_SLOT = 2;")
    config = config_h.parse(edited)
    assert (config.ssid, config.slot) == ("Class WiFi", 2)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda t: t.replace("const int KEY_SLOT = 0;\n", ""), "does not define KEY_SLOT"),
        (
            lambda t: t.replace('"broker.local"', '"https://broker.local/"'),
            "cannot use as they are",
        ),
        (
            lambda t: t.replace('DEVICE_NAME[] = "device_01"', 'DEVICE_NAME[] = "other"'),
            "certificate is for 'device_01'",
        ),
        (
            lambda t: t.replace("BROKER_PORT = 8883", 'BROKER_PORT = "8883"'),
            "BROKER_PORT in config.h should be a whole number",
        ),
    ],
)
def test_parse_refuses_what_the_board_cannot_use(certificates, edit, words) -> None:
    text = config_h.render("wifi", "password1", "broker.local", certificates[1]).text
    with pytest.raises(errors.ConfigError, match=re.escape(words)):
        config_h.parse(edit(text))


def test_config_h_carries_a_ca_only_when_the_sketch_does_not(ca) -> None:
    from kit.trust import amazon_roots

    assert config_h.trust_anchor(amazon_roots()) == ""  # AWS: amazon_trust_anchors.h has them
    assert config_h.trust_anchor(amazon_roots().replace("\n", "\r\n")) == ""
    root_1 = amazon_roots().split("# Amazon Root CA 3")[0]  # what older device records hold
    assert config_h.trust_anchor(root_1) == ""
    local = ca.cert.public_bytes(serialization.Encoding.PEM).decode()
    assert config_h.trust_anchor(local) == local  # any other cloud's CA goes into config.h


def test_the_virtual_board_trusts_the_roots_the_sketch_trusts(certificates, ca) -> None:
    # The sketch picks amazon_trust_anchors.h (written from the same PEM) or config.h's local
    # CA; the virtual board's TLS trusts the same, so neither accepts a broker the other refuses.
    on_aws = config_h.render("w", "password1", "a-ats.iot.eu-west-1.amazonaws.com", certificates[0])
    found = x509.load_pem_x509_certificates(on_aws.config.trusted_roots.encode())
    assert [cert.subject.rfc4514_string() for cert in found] == [
        "CN=Amazon Root CA 1,O=Amazon,C=US",
        "CN=Amazon Root CA 3,O=Amazon,C=US",
    ]
    local = ca.cert.public_bytes(serialization.Encoding.PEM).decode()
    on_local = config_h.render("w", "password1", "b.local", certificates[0], local_ca=local)
    assert on_local.config.trusted_roots == on_local.config.local_ca
    assert "Amazon" not in on_local.config.trusted_roots


def test_the_notebook_shows_a_summary_and_the_whole_file_on_request(certificates) -> None:
    # Eighty lines do not fit a projector: a few rows first, the file folded under <details>.
    rendered = config_h.render("Classroom", "hunter2!hunter2", "broker.local", certificates[0])
    shown = rendered._repr_html_()
    summary, whole = shown.split("<details>")
    assert "Classroom, password set (masked)" in summary and "broker.local:8883" in summary
    assert "Amazon Root CA 1 and 3" in summary and "#define" not in summary
    assert "WIFI_SSID" in whole and "hunter2" not in shown
