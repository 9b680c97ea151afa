"""The course itself: every notebook runs top to bottom on the defaults (`kit demo`), the outputs
prove each step worked, and no secret reaches a saved file."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from kit import demo

PASSWORD = "Kn0wn-WiFi-Pa55word!"


def outputs(notebook) -> dict[str, str]:
    """Each code cell's first line → everything it showed."""
    shown = {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for out in cell.outputs:
            parts.append(out.get("text", ""))
            for kind in ("text/plain", "text/html"):
                parts.append(out.get("data", {}).get(kind, ""))
            if "image/png" in out.get("data", {}):
                parts.append("<PNG>")
            parts.extend(out.get("traceback", []))
        shown[cell.source.splitlines()[0]] = "\n".join(parts)
    return shown


@pytest.fixture(scope="module")
def course_run(tmp_path_factory):
    """The whole course, run once with a known WiFi password typed into the form."""
    build = tmp_path_factory.mktemp("build")
    old = os.environ.get("KIT_WIFI_PASSWORD")
    os.environ["KIT_WIFI_PASSWORD"] = PASSWORD
    lines: list[str] = []
    try:
        code = demo.run(build, progress=lines.append)
    finally:
        if old is None:
            os.environ.pop("KIT_WIFI_PASSWORD")
        else:
            os.environ["KIT_WIFI_PASSWORD"] = old
    return code, build, "\n".join(lines)


def executed(build: Path, name: str) -> dict[str, str]:
    return outputs(nbformat.read(build / "notebooks" / f"{name}.ipynb", as_version=4))


@pytest.mark.timeout(600)
def test_the_course_runs_on_the_defaults(course_run) -> None:
    code, build, said = course_run
    assert code == 0, said
    assert "every step worked" in said
    assert re.search(r"messages recorded from the device: [1-9]", said)
    assert "LED round trip: the device reported 40 %" in said
    for name in demo.COURSE:
        assert (build / "html" / f"{name}.html").exists()
    exported = (build / "html" / "04_run_prototype.html").read_text(encoding="utf-8")
    assert "Figure(" not in exported  # the dashboard's raw widget repr never reaches the export
    for name in ("01_generate_csr", "03_configure_sketch"):  # the forms read as sentences
        exported = (build / "html" / f"{name}.html").read_text(encoding="utf-8")
        assert "VBox(" not in exported and "Checkbox(" not in exported, name
    assert (
        "I understand locking is permanent" in (build / "html" / "01_generate_csr.html").read_text()
    )


def test_each_step_shows_what_it_did(course_run) -> None:
    _, build, _ = course_run
    setup = executed(build, "00_setup")
    assert "Python" in setup["doctor.run()"] and "Local cloud" in setup["doctor.run()"]
    assert "The local cloud runs" in setup["course.start()"]
    csr = executed(build, "01_generate_csr")
    dialog = next(
        text for line, text in csr.items() if line.startswith("captured = course.capture")
    )
    assert "a real chip would need your consent" in dialog.lower()
    assert "Here's your CSR, enjoy!" in dialog and "-----END CERTIFICATE REQUEST-----" in dialog
    assert "valid: made with the private key" in csr["captured"]
    register = executed(build, "02_register_thing")
    said = register["registration = course.register()"]
    assert "in the local cloud; broker localhost:" in said and "is now the current device" in said
    match = register["certs.compare(course.last_capture().csr, certificate)"]
    assert "carries this CSR's public key" in match
    assert "Policy:" in register['print(f"Thing:       {registration.thing}")']
    laptop = register["course.register_a_laptop_csr()"]  # what the signature does not prove
    assert "its signature is valid" in laptop and "the local cloud issued a certificate" in laptop
    configure = executed(build, "03_configure_sketch")
    assert (
        "const char BROKER_HOST[] = &quot;localhost&quot;;"
        in configure["rendered = course.configure(wifi)"]
    )
    assert "********" in configure["rendered = course.configure(wifi)"]
    assert "password set (masked)" in configure["rendered = course.configure(wifi)"]
    assert "No WiFi name given" in configure["rendered = course.configure(wifi)"]
    run = executed(build, "04_run_prototype")
    assert "MQTT: connected" in run["course.serial_log()"]
    waited = run["course.wait_for_readings(view, 3)"]
    assert re.search(r"[3-9] new readings from", waited)
    assert "<PNG>" in waited  # the static image for headless runs and HTML
    assert "answered: its LED is at 40 %" in run["view.led.ask(40)"]
    inside = executed(build, "05_look_inside")
    device = register["registration = course.register()"].split("Registered ")[1].split()[0]
    assert f"{device}: registered in the local cloud" in inside["inside = course.look_inside()"]
    assert f"CN={device}" in inside["inside.csr"] and f"CN={device}" in inside["inside.certificate"]
    assert "things/${iot:ClientId}/*" in inside["print(inside.policy)"]
    wrong_id = inside['course.misbehave("wrong-client-id")']
    assert "not authorized" in wrong_id and "refused" in wrong_id  # board's and broker's side
    forbidden = inside['course.misbehave("forbidden-topic")']
    assert "connection lost" in forbidden and "is not allowed" in forbidden


def test_no_secret_reaches_a_saved_file(course_run) -> None:
    _, build, _ = course_run
    config_h = build / "config.h"
    assert PASSWORD in config_h.read_text() and oct(config_h.stat().st_mode)[-3:] == "600"
    checked = 0
    roots = [build, Path(__file__).resolve().parent.parent / "notebooks"]
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path != config_h:
                assert PASSWORD.encode() not in path.read_bytes(), path
                checked += 1
    assert checked > 20


def test_a_failing_step_is_named(tmp_path) -> None:
    lines: list[str] = []
    code = demo.run(tmp_path, progress=lines.append, notebooks=("02_register_thing",))
    assert code == 1
    said = "\n".join(lines)
    assert "FAILED at 02_register_thing" in said
    assert "No CSR captured yet" in (tmp_path / "02_register_thing.error.txt").read_text()


def test_the_name_box_checks_as_you_type() -> None:
    from kit import course

    box = course.name_field()
    assert "serial number" in box.message.value
    box.text.value = "greenhouse_1"
    assert "'greenhouse_1' works" in box.message.value and "'_'" in box.message.value
    box.text.value = "my board"
    assert "a space; use '-' or '_'" in box.message.value
