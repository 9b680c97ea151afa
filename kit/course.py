"""The course's steps, one call per notebook cell.

Each function does one step of the workshop exercise on the chosen board and cloud (the
settings, default: the virtual board and the local cloud) and returns something that displays
well in a notebook. State that later notebooks need (the captured CSR, the device record) is
kept in KIT_HOME, so a restarted kernel or the next notebook carries on.
"""

from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets

from kit import board, certs, config_h, devices, settings, steps, telemetry
from kit.cloud import Registration, open_cloud
from kit.errors import KitError
from kit.places import kit_home, write_private
from kit.printable import printable
from kit.sim import board as vboard
from kit.widgets import Dashboard

VIRTUAL_BOARD = "default"
# The virtual board's WiFi joins any network; a real password is never needed for it.
VIRTUAL_WIFI_PASSWORD = "virtual-wifi-password"


class Notice(str):
    """A sentence for the notebook, shown as a highlighted note."""

    def _repr_html_(self) -> str:
        text = html.escape(printable(self), quote=False)
        return f"<div style='border-left:4px solid #0072B2;padding:4px 10px'>{text}</div>"


def use(
    board_name: str | None = None, cloud: str | None = None, profile: str = "", region: str = ""
) -> settings.Settings:
    """The settings cell: which board ("virtual" or a port) and which cloud ("local" or "aws")."""
    current = settings.load()
    chosen = settings.Settings(
        board=board_name or current.board,
        cloud=cloud or current.cloud,
        profile=profile or current.profile,
        region=region or current.region,
        interval=current.interval,
    )
    if chosen.board == "auto":
        chosen = settings.Settings(
            board.choose_board().device,
            chosen.cloud,
            chosen.profile,
            chosen.region,
            chosen.interval,
        )
    return settings.save(chosen)


def start() -> Notice:
    """Start what the settings need: the local cloud, and the virtual board with the CSR sketch."""
    from kit.cloud import service

    chosen = settings.load()
    said = []
    if chosen.cloud == "local":
        ports = service.ports_from_environment()
        state = service.start_service(port=ports.port, ws_port=ports.ws_port)
        said.append(f"The local cloud runs: MQTT over TLS on {state.broker_host}:{state.port}.")
    if chosen.virtual:
        info = vboard.start(VIRTUAL_BOARD)
        said.append(
            f"The virtual board runs, chip {info.chip_serial}, with the CSR sketch "
            f"(its serial port: {info.pty or info.url})."
        )
    return Notice(" ".join(said) or "Nothing to start: a real board and AWS are chosen.")


def name_field(value: str = "") -> widgets.VBox:
    """A device-name box that says at once whether the name works (empty: the serial number)."""
    text = widgets.Text(
        value=value, description="Device name", placeholder="empty: the chip's serial number"
    )
    message = widgets.HTML()

    def check(change: dict) -> None:
        name = change["new"].strip()
        if not name:
            message.value = "The chip's serial number will be the device name."
            return
        try:
            note = certs.validate_device_name(name).note
        except KitError as error:
            message.value = (
                f"<span style='color:#D55E00'>{html.escape(str(error), quote=False)}</span>"
            )
            return
        message.value = (
            f"'{html.escape(printable(name), quote=False)}' works. {html.escape(note, quote=False)}"
        )

    text.observe(check, names="value")
    check({"new": value})
    box = widgets.VBox([text, message])
    box.text, box.message = text, message  # type: ignore[attr-defined]
    return box


@dataclass(frozen=True)
class Captured:
    """What the CSR step leaves for the registration step."""

    csr: certs.Csr
    slot: int
    board: str
    chip_serial: str

    def _repr_html_(self) -> str:
        return self.csr._repr_html_()


def capture_csr(name: str | None = None, slot: int = 0, lock_consent: bool = False) -> Captured:
    """Run the CSR sketch's dialog, printing the serial transcript live; keep the CSR."""
    chosen = settings.load()
    if name:
        certs.validate_device_name(name)
    if chosen.virtual:
        info = vboard.start(
            VIRTUAL_BOARD
        )  # re-flashes the CSR sketch if the board ran other firmware
        port = info.url
        if not vboard.chip(VIRTUAL_BOARD).locked:
            print(
                "A real chip would need your consent here: locking is permanent. This chip is "
                "virtual (`kit sim --reset` makes it new again), so the notebook locks it.\n"
            )
        lock = True
    else:
        port, lock = chosen.board, lock_consent
    capture = board.capture_csr(
        port,
        name=name,
        slot=slot,
        lock=lock,
        on_output=lambda text: print(text, end="", flush=True),
    )
    captured = Captured(capture.csr, capture.slot, port, capture.chip_serial)
    folder = kit_home() / "course"
    write_private(folder / "csr.pem", capture.csr.pem)
    write_private(
        folder / "capture.json",
        json.dumps({"slot": capture.slot, "board": port, "chip_serial": capture.chip_serial})
        + "\n",
    )
    return captured


def last_capture() -> Captured:
    """The CSR the last capture kept (after a kernel restart too)."""
    folder = kit_home() / "course"
    try:
        facts = json.loads((folder / "capture.json").read_text(encoding="utf-8"))
        csr = certs.load_csr((folder / "csr.pem").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KitError("No CSR captured yet: run notebook 01_generate_csr first.") from None
    return Captured(csr, facts["slot"], facts["board"], facts["chip_serial"])


def register() -> Registration:
    """Register the captured CSR in the chosen cloud (writes the device record)."""
    chosen = settings.load()
    captured = last_capture()
    cloud = open_cloud(chosen.cloud, profile=chosen.profile or None, region=chosen.region or None)
    return steps.register(
        cloud,
        captured.csr,
        slot=captured.slot,
        board=captured.board,
        chip_serial=captured.chip_serial,
    ).registration


def wifi_form(ssid: str = "") -> widgets.VBox:
    """The WiFi name and a password field (the password is never shown or saved)."""
    name = widgets.Text(value=ssid, description="WiFi name", placeholder="2.4 GHz network")
    # KIT_WIFI_PASSWORD fills it for scripted runs; configure() clears it after reading.
    password = widgets.Password(
        value=os.environ.get("KIT_WIFI_PASSWORD", ""),
        description="Password",
        placeholder="not needed for the virtual board",
    )
    form = widgets.VBox([name, password])
    form.ssid, form.password = name, password  # type: ignore[attr-defined]
    return form


def configure(form: widgets.VBox) -> config_h.RenderedConfig:
    """Render config.h from the form and the current device, write it, and flash the board."""
    chosen = settings.load()
    record = devices.load()
    password = form.password.value  # type: ignore[attr-defined]
    form.password.value = ""  # type: ignore[attr-defined]  # never left in widget state
    ssid = form.ssid.value or ("Classroom" if chosen.virtual else "")  # type: ignore[attr-defined]
    if chosen.virtual and not password:
        password = VIRTUAL_WIFI_PASSWORD
    rendered = config_h.render(
        ssid,
        password,
        record.broker_host,
        record.certificate_pem,
        port=record.broker_port,
        slot=record.slot,
        local_ca=config_h.trust_anchor(record.ca_pem),
    )
    path = Path(os.environ.get("KIT_CONFIG_H") or config_h.default_path())
    rendered.write(path)
    if chosen.virtual:
        vboard.start(VIRTUAL_BOARD, config=path, interval=chosen.interval)
    return rendered


def flash() -> Notice:
    """Put the AWS sketch on the board: arduino-cli when installed, else say how."""
    if settings.load().virtual:
        return Notice("The virtual board now runs the AWS firmware with this config.h.")
    from kit import arduino

    if not arduino.available():
        return Notice(arduino.instructions())
    port = arduino.upload("AWS")
    return Notice(f"Uploaded the AWS sketch to the board on {port}.")


def serial_log(lines: int = 15, timeout: float = 15) -> None:
    """Print the last lines the virtual board printed on its serial port (after its latest
    boot, waiting a little for it to reach the broker)."""
    if not settings.load().virtual:
        print(
            "A real board's log is on its serial port: open the Arduino IDE's Serial Monitor "
            "at 115200 baud (close it again before capturing a CSR)."
        )
        return
    path = vboard.board_dir(VIRTUAL_BOARD) / "serial.log"
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        booted = text[text.rfind("WiFi: joining") :] if "WiFi: joining" in text else text
        if "MQTT: connected" in booted or "MQTT: failed" in booted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    text = booted
    print("\n".join(text.replace("\r", "").strip().splitlines()[-lines:]))


def dashboard(window: int = 600) -> Dashboard:
    """Watch the current device: history from the recorder first, then live."""
    chosen = settings.load()
    record = devices.load()
    cloud = open_cloud(record.cloud, profile=chosen.profile or None, region=chosen.region or None)
    watch = telemetry.Telemetry(cloud.observer(), record.thing).start()
    watch.backfill(cloud.history(record.thing))
    return Dashboard(watch, record.thing, window).start()


def wait_for_readings(view: Dashboard, count: int = 3, timeout: float = 60) -> str:
    """Wait until the plot holds `count` readings (for runs without a person watching)."""
    deadline = time.monotonic() + timeout
    while len(view.watch.readings(view.thing)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    view.refresh()
    return f"{len(view.watch.readings(view.thing))} readings from {view.thing}"


def wait_for_led(view: Dashboard, value: int, timeout: float = 30) -> str:
    """Wait until the device reports the LED at `value` on led/state."""
    deadline = time.monotonic() + timeout
    while view.watch.led_state(view.thing) != value and time.monotonic() < deadline:
        time.sleep(0.2)
    view.refresh()
    state = view.watch.led_state(view.thing)
    return f"{view.thing} reports its LED at {state} %" if state is not None else "no answer yet"


def misbehave(mode: str, seconds: float = 4.0) -> None:
    """Run the virtual board with a misbehaviour for a few seconds; return what it logged."""
    path = Path(os.environ.get("KIT_CONFIG_H") or config_h.default_path())
    log = vboard.board_dir(VIRTUAL_BOARD) / "serial.log"
    start = log.stat().st_size if log.exists() else 0
    vboard.start(VIRTUAL_BOARD, config=path, interval=1.0, misbehave=mode)
    time.sleep(seconds)
    with log.open("rb") as handle:
        handle.seek(start)
        text = handle.read().decode("utf-8", errors="replace").replace("\r", "")
    vboard.start(VIRTUAL_BOARD, config=path, interval=settings.load().interval)  # behave again
    text = text[text.find("WiFi: joining") :]  # from the misbehaving board's boot on
    lines = [line for line in text.splitlines() if line.startswith(("MQTT", "Published"))]
    print("The board's serial log:")
    print("\n".join("  " + line for line in lines[:8]))
    from kit.cloud.local import cloud_dir

    broker_log = cloud_dir() / "broker.log"
    if broker_log.exists():
        said = broker_log.read_text(errors="replace").splitlines()
        decisions = [line for line in said if "kit.broker" in line][-4:]
        print("The broker's log:")
        print("\n".join("  " + line.split("kit.broker: ", 1)[-1] for line in decisions))
