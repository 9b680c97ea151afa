"""Generated values for every `kit` command's arguments and for every state file in the data
folder: the answer is exit status 0 or 1 with a one-paragraph message, never a traceback, and no
file is left half-written.

Commands that would run for good on valid arguments (sim, cloud up/run, lab, demo, class serve)
are fuzzed through the parser only; every other command runs in this process. KIT_FUZZ_EXAMPLES
sets how many examples each test tries (40 by default; a few hundred for a deeper search).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import csr_pem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_input import assert_one_paragraph

from kit import certs, steps
from kit.cli import build_parser, main
from kit.cloud.local import LocalCloud
from kit.errors import UsageError

PARSE_ONLY = {"sim", "cloud", "lab", "demo", "class"}  # class: `serve` runs for good
SPECIAL_VALUES = [
    "",
    "-",
    "0",
    "-1",
    "4",
    "65536",
    "70000",
    "١٢٣",
    "nan",
    "inf",
    "1e309",
    "0x10",
    "/dev/zero",
    "/dev/null",
    "/proc/self/mem",
    "/tmp",
    "/no/such/folder/file",
    "../../etc/passwd",
    "dev\nForged: line",
    "\x1b[2J\x1b[31mred",
    "\u202eevil",
    "sim://default",
    "sim://no-such-board",
    "all",
    "virtual",
    "auto",
    "local",
    "aws",
    "x" * 300,
]
VALUES = st.one_of(
    st.sampled_from(SPECIAL_VALUES),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
)
SUBCOMMANDS = next(
    a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
).choices


@st.composite
def command_lines(draw: st.DrawFn, name: str) -> list[str]:
    """`kit NAME` with a random choice of its options, random values, and maybe extra words."""
    argv = [name, *_words(draw, SUBCOMMANDS[name])]
    if draw(st.integers(0, 9)) == 0:
        argv.append(draw(VALUES))
    return argv


def _words(draw: st.DrawFn, parser: argparse.ArgumentParser) -> list[str]:
    """Random words for one parser's arguments (an action's own subparser in turn)."""
    argv = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):  # `kit class ACTION ...`
            chosen = draw(st.sampled_from(sorted(action.choices)))
            argv += [chosen, *_words(draw, action.choices[chosen])]
            continue
        if not action.option_strings:
            if action.nargs != "?" or draw(st.booleans()):
                argv.append(draw(st.sampled_from(action.choices) if action.choices else VALUES))
            continue
        if not draw(st.booleans()):
            continue
        argv.append(action.option_strings[-1])
        if action.nargs != 0:
            values = st.sampled_from(action.choices) if action.choices else VALUES
            argv.append(draw(st.one_of(values, VALUES)))
    return argv


def run(argv: list[str], stdin: bytes = b"password1\n") -> tuple[int, str, str]:
    """`kit ARGV` in this process; stdout and stderr as text."""
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    try:
        status = main(argv)
        return status, sys.stdout.getvalue(), sys.stderr.getvalue()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


def assert_answered(status: int, out: str, err: str, argv: list[str]) -> None:
    """Exit status 0 or 1; a failure ends in a one-paragraph message (or, like `kit doctor`'s
    report of what is not ready, in what it printed)."""
    assert status in (0, 1), (argv, err)
    assert "Traceback" not in out + err
    if status == 1:
        assert (err or out).strip(), f"{argv} failed without a word"
        if err.strip():
            assert_one_paragraph(err.strip().splitlines()[-1])


def assert_nothing_half_written(*folders: Path) -> None:
    leftovers = [p for folder in folders for p in folder.rglob("*.tmp")]
    assert not leftovers, leftovers


@pytest.fixture(autouse=True)
def no_cloud_lookups(monkeypatch) -> None:
    """AWS calls end at once without credentials (no instance-metadata timeouts)."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "KIT_WIFI_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


FUZZ = settings(
    max_examples=int(os.environ.get("KIT_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_command_answers_generated_arguments_with_0_or_1(
    name: str, kit_home: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative --out paths land here

    @FUZZ
    @given(argv=command_lines(name))
    def check(argv: list[str]) -> None:
        if name in PARSE_ONLY:
            try:
                build_parser().parse_args(argv)
            except UsageError as error:
                assert "\n" not in str(error)
            return
        status, out, err = run(argv)
        assert_answered(status, out, err, argv)
        assert_nothing_half_written(kit_home, tmp_path)

    check()


STATE_FILES = [
    "kit-home.json",
    "settings.json",
    "devices/dev_1/device.json",
    "devices/dev_1/certificate.pem",
    "devices/dev_1/ca.pem",
    "cloud/service.json",
    "cloud/cloud.db",
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def _near_valid(path: str) -> st.SearchStrategy[bytes]:
    """JSON close to what the kit writes: the right keys with wrong values, or extra keys."""
    keys = {
        "kit-home.json": ["format", "created_by"],
        "settings.json": ["course", "current_device"],
        "devices/dev_1/device.json": ["thing", "cloud", "broker_host", "broker_port", "slot"],
        "cloud/service.json": ["pid", "host", "port", "ws_port", "broker_host"],
    }.get(path, ["x"])
    return st.dictionaries(st.sampled_from([*keys, "extra"]), JSON_VALUES).map(
        lambda d: json.dumps(d).encode()
    )


STATE_COMMANDS = [
    ["things"],
    ["config-h", "--ssid", "wifi", "--password-stdin"],
    ["cloud", "status"],
    ["use", "virtual"],
    ["doctor"],
    ["unregister", "--yes"],
]


@pytest.mark.parametrize("path", STATE_FILES)
def test_every_state_file_damaged_any_way_gives_a_message(path: str, monkeypatch) -> None:
    @settings(FUZZ, max_examples=max(1, FUZZ.max_examples * 5 // 8))
    @given(
        content=st.one_of(
            st.binary(max_size=64),
            JSON_VALUES.map(lambda v: json.dumps(v).encode()),
            _near_valid(path),
        )
    )
    def check(content: bytes) -> None:
        with tempfile.TemporaryDirectory() as folder:
            home = Path(folder) / "home"
            monkeypatch.setenv("KIT_HOME", str(home))
            cloud = LocalCloud()
            steps.register(cloud, certs.load_csr(csr_pem("dev_1")))
            cloud.store.close()
            (home / path).write_bytes(content)
            for argv in STATE_COMMANDS:
                before = (home / path).read_bytes() if (home / path).exists() else None
                status, out, err = run(argv)
                assert_answered(status, out, err, argv)
                if status == 1 and "is damaged" in err and before is not None:
                    assert (home / path).read_bytes() == before, "a damaged file changed"
                assert_nothing_half_written(home)

    check()


def test_the_fuzzer_reaches_every_command() -> None:
    # A command added later is fuzzed too; the parse-only ones are named on purpose.
    assert set(SUBCOMMANDS) >= PARSE_ONLY
    assert len(set(SUBCOMMANDS) - PARSE_ONLY) >= 10
    assert os.environ.get("KIT_HOME")


@pytest.fixture(autouse=True)
def _stop_what_the_commands_started(kit_home: Path):
    """`kit csr` with the virtual board starts it itself: stop it with the test's data folder."""
    yield
    if (kit_home / "boards").exists():
        steps.stop_everything()
