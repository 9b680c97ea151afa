"""`kit doctor`: is this computer ready for the course? Each check says what it found and what
to do, for a student on a laptop and an instructor preparing a room."""

from __future__ import annotations

import html
import shutil
import socket
import sys
from dataclasses import dataclass
from importlib import metadata

from kit import settings as course_settings
from kit.places import kit_home
from kit.printable import mark_commands, printable

PACKAGES = (
    "jupyterlab",
    "ipywidgets",
    "pyserial",
    "paho-mqtt",
    "websockets",
    "boto3",
    "cryptography",
    "bqplot",
)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    found: str
    advice: str = ""
    optional: bool = False  # fine without it (arduino-cli): never shown as "ready"

    @property
    def status(self) -> str:
        """The status in words, first (icons may render as empty boxes without an emoji font)."""
        if not self.ok:
            return "Fix this"
        return "Optional" if self.optional else "OK"


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def text(self) -> str:
        lines = []
        for check in self.checks:
            mark = "!! " if not check.ok else ("-- " if check.optional else "ok ")
            # Found values come from outside (settings, board names, paths): show, never obey.
            lines.append(f"{mark} {check.name}: {printable(check.found)}")
            if check.advice:
                lines.append(f"     {printable(check.advice)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='text-align:left'><b>{c.status}</b> "
            f"{'✓' if c.status == 'OK' else ('·' if c.optional else '!')}</td>"
            f"<th style='text-align:left'>{html.escape(c.name)}</th>"
            f"<td style='text-align:left'>{html.escape(printable(c.found))}"
            + (f"<br><i>{_code(c.advice)}</i>" if c.advice else "")
            + "</td></tr>"
            for c in self.checks
        )
        return f"<table>{rows}</table>"

    def __str__(self) -> str:
        return self.text()


def _code(text: str) -> str:
    """Advice as HTML, its `commands` shown as code."""
    return mark_commands(html.escape(printable(text)), "<code>", "</code>")


def broker_reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the broker's port gets through from this computer."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def run() -> Report:
    """Every check, without changing anything."""
    from kit.board import find_boards
    from kit.cloud.service import service_state
    from kit.repair import damage

    damaged = damage()
    # With damaged settings the other checks still run, on the defaults.
    chosen = course_settings.Settings() if damaged else course_settings.load()
    checks = [
        Check(
            "Python",
            sys.version_info >= (3, 10),
            sys.version.split()[0],
            "" if sys.version_info >= (3, 10) else "Install Python 3.10 or newer.",
        )
    ]
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            checks.append(
                Check(package, False, "not installed", "Run `make lab` (or pip install -e .).")
            )
    checks.append(Check("Packages", True, ", ".join(versions)))
    checks.append(
        Check(
            "Data folder",
            not damaged,
            str(kit_home(create=False)),
            " ".join(str(error) for error in damaged),
        )
    )
    checks.append(
        Check(
            "Settings",
            True,
            f"board: {chosen.board}, cloud: {chosen.cloud}"
            + (
                f" (profile {chosen.profile or 'default'}, region {chosen.region or 'default'})"
                if chosen.cloud == "aws"
                else ""
            ),
        )
    )
    boards = [b for b in find_boards() if b.kind in ("supported", "virtual")]
    checks.append(
        Check(
            "Boards",
            bool(boards) or chosen.virtual,
            ", ".join(str(b) for b in boards) or "none attached",
            ""
            if boards
            else (
                "The course uses the virtual board."
                if chosen.virtual
                else "Plug the board in with a data USB cable, or choose the virtual board."
            ),
        )
    )
    cli = shutil.which("arduino-cli")
    checks.append(
        Check(
            "arduino-cli",
            True,
            cli or "not installed",
            ""
            if cli
            else "Optional: upload from the Arduino IDE instead, or install "
            "arduino-cli (conda install -c conda-forge arduino-cli).",
            optional=not cli,
        )
    )
    checks.append(_aws_check(chosen))
    state = service_state()
    if state is None:
        checks.append(
            Check(
                "Local cloud",
                chosen.cloud != "local",
                "not running",
                "Start it: course.start() in notebook 00, or `kit cloud up` in a terminal.",
            )
        )
    else:
        reachable = broker_reachable(
            "127.0.0.1" if state.host in ("0.0.0.0", "127.0.0.1") else state.host, state.port
        )
        checks.append(
            Check(
                "Local cloud",
                reachable,
                f"running (process {state.pid}), MQTT/TLS on {state.broker_host}:{state.port}"
                + ("" if reachable else ", but the port does not answer"),
                "A real board reaches it only with `kit cloud up --listen`, on the same network, "
                "and if that network lets devices talk to each other (guest networks often do "
                "not).",
            )
        )
    if chosen.cloud == "aws":
        checks.append(
            Check(
                "Port 8883",
                True,
                "AWS IoT takes device certificates on 8883 only",
                "Campus networks often block outgoing 8883, and the board cannot fall back to 443: "
                "check from the room the board will be in (`kit doctor` there).",
            )
        )
    return Report(tuple(checks))


def _aws_check(chosen: course_settings.Settings) -> Check:
    try:
        import boto3

        session = boto3.Session(
            profile_name=chosen.profile or None, region_name=chosen.region or None
        )
        credentials = session.get_credentials()
    except Exception as error:
        return Check(
            "AWS credentials",
            chosen.cloud != "aws",
            f"unusable ({error})",
            "Check the profile name with `aws configure list-profiles`.",
        )
    if credentials is None:
        return Check(
            "AWS credentials",
            chosen.cloud != "aws",
            "none",
            "Only needed for the AWS cloud: `aws configure` or `aws sso login`.",
        )
    return Check("AWS credentials", True, f"found (region {session.region_name or 'not set'})")
