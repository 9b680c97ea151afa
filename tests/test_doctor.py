"""`kit doctor` on a machine without boards or AWS credentials, before and after the cloud runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def kit(*args: str, tmp_path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
    )


def test_doctor_is_friendly_without_boards_or_credentials(tmp_path) -> None:
    done = kit("doctor", tmp_path=tmp_path)
    assert done.returncode == 1  # the local cloud is not running yet
    report = done.stdout
    assert "ok  Python: 3." in report
    assert "Boards: none attached" in report and "The course uses the virtual board." in report
    assert "AWS credentials: none" in report and "aws configure" in report
    assert "!!  Local cloud: not running" in report and "kit cloud up" in report
    assert "Traceback" not in done.stderr


def test_doctor_checks_the_broker_answers(tmp_path) -> None:
    port, ws_port = free_port(), free_port()
    assert (
        kit(
            "cloud", "up", "--port", str(port), "--ws-port", str(ws_port), tmp_path=tmp_path
        ).returncode
        == 0
    )
    try:
        done = kit("doctor", tmp_path=tmp_path)
        assert done.returncode == 0, done.stdout
        assert "ok  Local cloud: running" in done.stdout and f"localhost:{port}" in done.stdout
        assert "--listen" in done.stdout  # what it means for a real board
    finally:
        kit("cloud", "down", tmp_path=tmp_path)


def test_doctor_for_aws_warns_about_port_8883(tmp_path) -> None:
    assert kit("use", "--cloud", "aws", "--region", "eu-west-1", tmp_path=tmp_path).returncode == 0
    done = kit("doctor", tmp_path=tmp_path)
    assert "!!  AWS credentials: none" in done.stdout
    assert "Campus networks often block outgoing 8883" in done.stdout


def test_statuses_are_words_first_and_honest() -> None:
    # Without an emoji font icons are empty boxes: the word says it; "not installed" is never OK.
    from kit.doctor import Check, Report

    report = Report(
        (
            Check("Python", True, "3.11"),
            Check("arduino-cli", True, "not installed", "Optional: ...", optional=True),
            Check("Local cloud", False, "not running", "Run course.start()."),
        )
    )
    cells = report._repr_html_()
    assert "<b>OK</b> ✓" in cells and "<b>Optional</b> ·" in cells and "<b>Fix this</b> !" in cells
    assert "✅" not in cells and "⚠" not in cells
    text = report.text().splitlines()
    assert text[0].startswith("ok ") and text[1].startswith("-- ") and text[3].startswith("!! ")
