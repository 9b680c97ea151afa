"""The local cloud as a background service and from the command line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import csr_pem
from mqtt_peers import connect

from kit import config_h, devices, errors
from kit.cloud import local
from kit.cloud import service as cloud_service


def kit(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def service():
    """`kit cloud up` on free ports; `kit cloud down` afterwards."""
    port, ws_port = free_port(), free_port()
    done = kit("cloud", "up", "--port", str(port), "--ws-port", str(ws_port))
    assert done.returncode == 0, done.stderr
    assert f"localhost:{port}" in done.stdout
    yield cloud_service.service_state()
    kit("cloud", "down")


def test_up_status_down(service) -> None:
    assert service is not None
    status = kit("cloud", "status")
    assert f"process {service.pid}" in status.stdout
    again = kit("cloud", "up", "--port", str(service.port), "--ws-port", str(service.ws_port))
    assert again.returncode == 0 and f"process {service.pid}" in again.stdout  # not a second one
    assert kit("cloud", "down").stdout.strip() == "Stopped the local cloud."
    assert "not running" in kit("cloud", "status").stdout
    assert cloud_service.service_state() is None


def test_a_stale_pid_file_is_cleaned_up(kit_home: Path) -> None:
    local.cloud_dir().mkdir(parents=True, exist_ok=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (local.cloud_dir() / "service.json").write_text(
        json.dumps(
            {
                "pid": int(dead),
                "host": "127.0.0.1",
                "port": 1,
                "ws_port": 2,
                "broker_host": "localhost",
            }
        )
    )
    assert cloud_service.service_state() is None
    assert "not running" in kit("cloud", "status").stdout
    port, ws_port = free_port(), free_port()
    done = kit("cloud", "up", "--port", str(port), "--ws-port", str(ws_port))
    try:
        assert done.returncode == 0, done.stderr
    finally:
        kit("cloud", "down")


def test_a_taken_port_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = kit("cloud", "up", "--port", str(port), "--ws-port", str(free_port()))
    assert done.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in done.stderr and "--port" in done.stderr


def test_register_things_config_h_unregister(service, tmp_path) -> None:
    csr_file = tmp_path / "csr.txt"
    csr_file.write_text(csr_pem("lab_7"))
    done = kit("register", str(csr_file), "--out", str(tmp_path / "out"), "--slot", "1")
    assert done.returncode == 0, done.stderr
    assert "Registered lab_7 in the local cloud." in done.stdout
    assert f"Broker: localhost:{service.port}" in done.stdout
    assert (tmp_path / "out" / "certificate.pem").exists() and (
        tmp_path / "out" / "ca.pem"
    ).exists()
    again = kit("register", str(csr_file))
    assert "Already registered: lab_7" in again.stdout
    assert kit("things").stdout.split() == ["lab_7"]

    out = tmp_path / "config.h"
    done = kit(
        "config-h", "--ssid", "Class", "--out", str(out), "--password-stdin", stdin="password1\n"
    )
    assert done.returncode == 0, done.stderr
    config = config_h.parse(out.read_text())
    assert (config.broker, config.port, config.slot, config.device_name) == (
        "localhost",
        service.port,
        1,
        "lab_7",
    )

    refused = kit("unregister", "lab_7")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert kit("unregister", "lab_7", "--yes").stdout.strip() == "Removed lab_7."
    assert kit("things").stdout.strip() == "No things registered yet."
    with pytest.raises(errors.KitError):
        devices.load("lab_7")


def test_unregister_all(service, tmp_path) -> None:
    for name in ("a1", "a2"):
        (tmp_path / f"{name}.csr").write_text(csr_pem(name))
        assert kit("register", str(tmp_path / f"{name}.csr")).returncode == 0
    done = kit("unregister", "--all", "--yes")
    assert done.stdout.split("\n")[:2] == ["Removed a1.", "Removed a2."]
    assert local.LocalCloud().things() == []


def test_service_outlives_the_process_that_started_it(service, tmp_path) -> None:
    cloud = local.LocalCloud()
    observer = cloud.observer()
    assert (observer.port, observer.ws_port) == (service.port, service.ws_port)
    peer = connect(
        "localhost",
        observer.port,
        "kit-observer-svc",
        observer.cert_file,
        observer.key_file,
        observer.ca_file,
    )
    assert peer.accepted
    peer.close()


def test_cloud_down_writes_every_acknowledged_message(tmp_path) -> None:
    import mqtt_raw as raw
    from mqtt_peers import make_device

    port, ws_port = free_port(), free_port()
    assert kit("cloud", "up", "--port", str(port), "--ws-port", str(ws_port)).returncode == 0
    files = make_device(tmp_path, "lab_9", local.LocalCloud())
    client = raw.RawClient("localhost", port, files.ca_file, files.cert_file, files.key_file)
    client.send(raw.connect("lab_9"))
    assert client.connack() == 0
    client.send(raw.burst("things/lab_9/environment", 90))
    assert client.count(90, timeout=3) == 90  # all acknowledged
    assert kit("cloud", "down").returncode == 0  # SIGTERM: a graceful stop
    assert len(local.LocalCloud().messages("lab_9")) == 90


def test_keep_days_must_be_a_positive_number() -> None:
    done = kit("cloud", "up", "--keep-days", "0")
    assert done.returncode == 1 and "number of days above 0" in done.stderr
