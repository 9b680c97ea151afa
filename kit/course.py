"""The course's steps, one call per notebook cell.

Each function does one step of the workshop exercise on the chosen board and cloud (the
settings, default: the virtual board and the local cloud) and returns something that displays
well in a notebook. State that later notebooks need (the captured CSR, the device record) is
kept in KIT_HOME, so a restarted kernel or the next notebook carries on.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from kit import (
    board,
    certs,
    config_h,
    devices,
    diagnosis,
    environment,
    laptop_csr,
    settings,
    steps,
    telemetry,
)
from kit import repair as repair_data
from kit.cloud import Registration
from kit.errors import CloudError, KitError, SettingsError, ThingTakenError
from kit.printable import mark_commands, printable
from kit.widgets import Dashboard

# The virtual board's WiFi joins any network; a real password is never needed for it.
VIRTUAL_WIFI_PASSWORD = "virtual-wifi-password"


def register_a_laptop_csr() -> Notice:
    """Register a CSR made on this laptop, with no chip, in the chosen cloud and remove it
    again: a valid signature says who holds the key, not that a chip made it (notebook 02)."""
    cloud = steps.open_chosen_cloud(settings.load(), environment.read())
    status = cloud.ensure_running()
    if not status.reachable:
        raise CloudError(str(status))
    return Notice(str(laptop_csr.register_and_remove(cloud)))


class Notice(str):
    """A sentence for the notebook, shown as a highlighted note."""

    def _repr_html_(self) -> str:
        text = mark_commands(html.escape(printable(self), quote=False), "<code>", "</code>")
        return f"<div style='border-left:4px solid #0072B2;padding:4px 10px'>{text}</div>"


def use(
    board_name: str | None = None,
    cloud: str | None = None,
    profile: str = "",
    region: str = "",
    url: str = "",
    user: str = "",
) -> Any:
    """The settings cell: which board ("virtual" or a port) and which cloud ("local", "aws",
    or "class" with the class server's `url` and your `user` from your card: then a login
    form, which switches the course to the class once you log in)."""
    if cloud == "class" and (url or user):
        from kit.class_login import ClassLogin

        if not (url and user):
            raise SettingsError("Logging in to a class needs both url= and user= (from your card).")
        return ClassLogin(url, user)
    current = settings.load()
    chosen = settings.Settings(
        board=board_name or current.board,
        cloud=cloud or current.cloud,
        profile=profile or current.profile,
        region=region or current.region,
        interval=current.interval,
    )
    if chosen.board == "auto":
        found = board.choose_board().device
        if found.startswith("sim://"):
            found = settings.VIRTUAL
            print(
                "No real board is attached, so the course uses the virtual board. Plug the board "
                'in with a data USB cable and run course.use("auto") again to use it.'
            )
        chosen = replace(chosen, board=found)
    return settings.save(chosen)


def start(new_chip: bool = False) -> Notice:
    """Start what the settings need: the local cloud, and the virtual board as the course left
    it. `new_chip=True` gives the virtual board a factory-new chip (unlocked, no keys)."""
    return Notice(" ".join(steps.start(settings.load(), environment.read(), new_chip=new_chip)))


def stop() -> Notice:
    """Stop the virtual boards and the local cloud (a later course.start() brings them back)."""
    return Notice(" ".join(steps.stop_everything()))


def repair() -> Notice:
    """Set damaged files in the data folder aside (renamed, never deleted) and start afresh."""
    done = repair_data.repair()
    if not done:
        return Notice("Nothing in the data folder is damaged.")
    kept = "; ".join(f"{step.kept.name} (in {step.kept.parent})" for step in done)
    return Notice(f"Set aside: {kept}. Run notebook 00 again, then carry on.")


def unregister(thing: str | None = None) -> Notice:
    """Remove a device (default: the current one) from its cloud and from this computer."""
    record = devices.load(thing)
    cloud = steps.open_record_cloud(record, environment.read())
    steps.unregister(cloud, record.thing)
    return Notice(f"Removed {record.thing} from the {cloud.name} cloud and from this computer.")


def teardown() -> Notice:
    """Remove every device the kit registered in the chosen cloud (never an account's others)."""
    cloud = steps.open_chosen_cloud(settings.load(), environment.read())
    removed = steps.teardown(cloud)
    if not removed:
        return Notice(f"The kit has no devices in the {cloud.name} cloud.")
    return Notice(f"Removed from the {cloud.name} cloud: {', '.join(removed)}.")


# Labels in full: ipywidgets cuts descriptions at about 80 px and inputs at 300 px otherwise.
WHOLE_LABEL = {"description_width": "initial"}


class LockConsent(widgets.Checkbox):  # type: ignore[misc]  # ipywidgets is untyped
    """The consent a real chip needs before it is locked, its warning readable in full."""

    def __init__(self) -> None:
        super().__init__(
            description="I understand locking is permanent: lock the chip",
            indent=False,
            style=WHOLE_LABEL,
            layout=widgets.Layout(width="auto"),
        )

    def __repr__(self) -> str:
        # What an HTML export or a console shows instead of the widget.
        return f"[{'x' if self.value else ' '}] {self.description}"


def lock_consent() -> LockConsent:
    """The lock-consent checkbox (notebook 01)."""
    return LockConsent()


def _field(kind: Any, value: str, description: str, placeholder: str) -> Any:
    """A text field (ipywidgets Text or Password) with its label and hint shown in full."""
    return kind(
        value=value,
        description=description,
        placeholder=placeholder,
        style=WHOLE_LABEL,
        layout=widgets.Layout(width="480px"),
    )


class NameField(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """A device-name box that says at once whether the name works (empty: the serial number)."""

    def __init__(self, value: str = "") -> None:
        self.text = _field(widgets.Text, value, "Device name", "empty: the chip's serial number")
        self.message = widgets.HTML()
        super().__init__([self.text, self.message])
        self.text.observe(lambda change: self._check(change["new"]), names="value")
        self._check(value)

    def _check(self, value: str) -> None:
        """Say under the field whether the name works, and why not."""
        sentence, works = _name_verdict(value)
        shown = html.escape(sentence, quote=False)
        self.message.value = shown if works else f"<span style='color:#D55E00'>{shown}</span>"

    def __repr__(self) -> str:
        return (
            f"Device name: {printable(self.text.value) or '(empty)'}. "
            + _name_verdict(self.text.value)[0]
        )


def _name_verdict(value: str) -> tuple[str, bool]:
    """Whether a typed device name works, in a sentence; empty means the chip's serial."""
    name = value.strip()
    if not name:
        return "The chip's serial number will be the device name.", True
    try:
        note = certs.validate_device_name(name).note
    except KitError as error:
        return str(error), False
    return f"'{printable(name)}' works. {note}", True


def name_field(value: str = "") -> NameField:
    """The device-name field (notebook 01)."""
    return NameField(value)


def capture_csr(
    name: str | None = None,
    slot: int = 0,
    lock_consent: bool = False,
    new_key: bool | None = None,
) -> steps.Captured:
    """Run the CSR sketch's dialog, printing the serial transcript live; keep the CSR.

    Running it again keeps the key of a device already registered (so notebook 02 still
    matches); `new_key=True` makes a new one.
    """
    return steps.capture(
        settings.load(),
        name=name,
        slot=slot,
        lock_consent=lock_consent,
        new_key=new_key,
        on_output=lambda text: print(text, end="", flush=True),
    )


def last_capture() -> steps.Captured:
    """The CSR the last capture kept (after a kernel restart too)."""
    return steps.last_capture()


def register(replace: bool = False) -> Registration:
    """Register the captured CSR in the chosen cloud (writes the device record).

    The cloud is started first if the kit runs it (notebook 00 skipped). With `replace=True` a
    registration of the same name with another key is removed first (the board made a new key).
    """
    cloud = steps.open_chosen_cloud(settings.load(), environment.read())
    status = cloud.ensure_running()
    if not status.reachable:
        raise CloudError(str(status))
    captured = steps.last_capture()
    thing = captured.csr.common_name
    replaced = replace and thing in cloud.things()
    if replaced:
        steps.unregister(cloud, thing)
    try:
        registered = steps.register_captured(cloud, captured)
    except ThingTakenError:
        raise ThingTakenError(
            f"The name '{thing}' is already registered with another key: the board made a new "
            "key since, or another board uses this name. If this is your board, run "
            "course.register(replace=True) to register its new key in place of the old one "
            "(the old certificate stops working). Otherwise choose another device name in "
            "notebook 01."
        ) from None
    done = registered.registration
    verb = "Registered" if done.created else "Already registered (the same key):"
    where = f"{done.broker_host}:{done.broker_port}"
    print(f"{verb} {done.thing} in the {cloud.name} cloud; broker {where}.")
    if registered.became_current:
        print(f"{done.thing} is now the current device: the next notebooks work with it.")
    if replaced:
        print(_stale_config(done, cloud.files_page()))
    return done


def _stale_config(done: Registration, page: str) -> str:
    """What a replaced registration makes stale (every config.h with the old certificate), and
    where the new one comes from."""
    path = _config_path()
    try:
        old = config_h.parse(path.read_text(encoding="utf-8")) if path.exists() else None
    except (OSError, KitError):
        old = None
    stale = old is not None and old.device_name == done.thing
    where = f", such as {path}" if stale else ""
    elsewhere = (
        f" Or download the new config.h from My devices on the class site ({page})." if page else ""
    )
    return (
        f"The old certificate of {done.thing} no longer works, and neither does any config.h "
        f"made with it{where}. Run notebook 03 again to write config.h with the new "
        f"certificate.{elsewhere}"
    )


class WifiForm(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """The WiFi name and a password field (the password is never shown or saved)."""

    def __init__(self, ssid: str = "") -> None:
        self.ssid = _field(widgets.Text, ssid, "WiFi name", "2.4 GHz network")
        # KIT_WIFI_PASSWORD fills it for scripted runs; configure() clears it after reading.
        self.password = _field(
            widgets.Password,
            environment.wifi_password() or "",
            "Password",
            "not needed for the virtual board",
        )
        super().__init__([self.ssid, self.password])

    def __repr__(self) -> str:
        # Never the password itself: only whether one was typed.
        typed = "typed (hidden)" if self.password.value else "empty"
        return f"WiFi name: {printable(self.ssid.value) or '(empty)'}; password: {typed}."


def wifi_form(ssid: str = "") -> WifiForm:
    """The WiFi form (notebook 03)."""
    return WifiForm(ssid)


def configure(form: WifiForm) -> config_h.RenderedConfig:
    """Render config.h from the form and the current device, write it, and flash the board."""
    chosen = settings.load()
    password = form.password.value
    ssid = form.ssid.value
    if chosen.virtual and not ssid:
        ssid = "Classroom"
        print(
            "No WiFi name given: the virtual board joins any network, so config.h says Classroom."
        )
    if chosen.virtual and not password:
        password = VIRTUAL_WIFI_PASSWORD
    # A refused value keeps its field (the password stays masked), so the student can correct
    # it; once config.h holds it, the field is emptied and it is left in no widget state.
    rendered = steps.configure(ssid, password)
    path = _config_path()
    rendered.write(path)
    form.password.value = ""
    if chosen.virtual:
        steps.flash_virtual(path, chosen.interval)
    return rendered


def _config_path() -> Path:
    """Where the course keeps config.h (KIT_CONFIG_H, or the AWS sketch's folder)."""
    return environment.read().config_h or config_h.default_path()


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
    print(diagnosis.serial_log(lines, timeout))


def dashboard(thing: str | None = None, window: int = 600) -> Dashboard:
    """Show the dashboard of the current device (or `thing`) at once: history from the
    recorder first, then live; a drop-down picks another device registered here."""
    chosen = settings.load()
    record = devices.load(thing)
    cloud = steps.open_record_cloud(record, environment.read())
    status = cloud.ensure_running()  # notebook 00 skipped, or the computer restarted
    if not status.reachable:
        raise CloudError(str(status))
    if chosen.virtual:
        steps.resume_virtual_board()
    # Every device: the picker switches between them.
    watch = telemetry.Telemetry(cloud.observer(), renew=cloud.observer).start()
    watch.backfill(cloud.history(record.thing))
    others = [r.thing for r in devices.all_records() if r.cloud == record.cloud]
    view = Dashboard(
        watch,
        record.thing,
        window,
        things=others,
        history=cloud.history,
        interval=chosen.interval if chosen.virtual else 10.0,
        presence=cloud.presence,
    ).start()
    view.show()
    return view


def wait_for_readings(view: Dashboard, count: int = 3, timeout: float = 60) -> Notice:
    """Wait until `count` new readings arrive from the board (history does not count); if
    they do not come in time, say why."""
    since = time.time()
    chosen = settings.load()
    # A virtual board that cannot be sending is known at once: no point in waiting.
    problem = diagnosis.virtual_board_problem() if chosen.virtual else None
    deadline = time.monotonic() + (0 if problem else timeout)
    while len(view.watch.readings(view.thing, since)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    view.refresh()
    got = len(view.watch.readings(view.thing, since))
    waited = time.time() - since
    if got >= count:
        view.show_snapshot()
        return Notice(
            f"{got} new readings from {view.thing} in the last {waited:.0f} s; the plot keeps "
            "adding them."
        )
    record = devices.load(view.thing)
    cloud = steps.open_record_cloud(record, environment.read())
    return Notice(diagnosis.diagnose(cloud, record, chosen, got, waited))


def wait_for_led(view: Dashboard, value: int, timeout: float = 30) -> Notice:
    """Wait until the board answers the last LED command on led/state (an answer from before
    the command does not count)."""
    asked_at = view.led.asked_at
    if asked_at is None or view.led.asked != value:
        return Notice(
            f"No LED command of {value} % was sent to {view.thing} from this dashboard: run "
            f"view.led.ask({value}) first (or move the slider)."
        )
    deadline = time.monotonic() + timeout
    while view.watch.led_answer(view.thing, since=asked_at) is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    view.refresh()
    answer = view.watch.led_answer(view.thing, since=asked_at)
    if answer is not None:
        return Notice(f"{view.thing} answered: its LED is at {answer.value} %.")
    waited = time.time() - asked_at
    chosen = settings.load()
    record = devices.load(view.thing)
    cloud = steps.open_record_cloud(record, environment.read())
    why = diagnosis.no_answer(cloud, record, chosen)
    return Notice(f"{view.thing} has not answered the LED command in {waited:.0f} s. {why}")


@dataclass(frozen=True, repr=False)
class Inside:
    """One device's CSR, certificate and policy, all from its record (notebook 05)."""

    record: devices.DeviceRecord
    csr: certs.Csr
    certificate: certs.Certificate
    policy: str  # the device policy document, as AWS IoT holds it

    def __str__(self) -> str:
        record = self.record
        day = record.registered_at[:10]
        chip = f", chip {record.chip_serial}" if record.chip_serial else ""
        return (
            f"{record.thing}: registered in the {record.cloud} cloud on {day}, key slot "
            f"{record.slot}{chip}. {certs.compare(self.csr, self.certificate)}"
        )

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return Notice(self)._repr_html_()


def look_inside(thing: str | None = None) -> Inside:
    """The current device (or `thing`): the CSR it was registered with, its certificate, and
    the policy; all three from one device record, whoever registered it."""
    record = devices.load(thing)
    return Inside(
        record,
        certs.load_csr(record.csr_pem),
        certs.load_certificate(record.certificate_pem),
        steps.device_policy(record),
    )


def misbehave(mode: str, seconds: float = 4.0) -> None:
    """Run the virtual board with a misbehaviour for a few seconds; print what it and the
    broker logged (the local broker's log: on AWS only the board's half shows)."""
    chosen = settings.load()
    if not chosen.virtual:
        print(
            "This step runs the virtual board with a deliberate mistake; a real board would need "
            'a sketch of its own for that. Run course.use("virtual") in notebook 00 to try it.'
        )
        return
    text = diagnosis.misbehave(_config_path(), mode, chosen.interval, seconds)
    lines = [line for line in text.splitlines() if line.startswith(("MQTT", "Published"))]
    print("The board's serial log:")
    print("\n".join("  " + line for line in lines[:8]))
    if devices.load().cloud != "local":
        print("The broker's log: only the kit's local broker keeps one on this computer.")
        return
    print("The broker's log:")
    print("\n".join("  " + line for line in diagnosis.broker_decisions(4)))
