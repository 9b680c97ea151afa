"""The course's steps with their effects on this computer, shared by notebooks and `kit`.

Each step takes what it needs as parameters (the settings, the environment's values as
kit.environment read them) and returns a value; notebook cells (kit.course) and CLI commands
(kit.cli) call these and only display. A cloud registers and removes devices and nothing else;
a step also keeps the device record in the data folder and says when the current device
changes. A class server registering a room of students calls the cloud, not these steps, so
nothing lands in the instructor's data folder.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kit import board, config_h, devices, settings
from kit.certs import Csr, load_certificate, load_csr, validate_device_name
from kit.cloud import Cloud, Registration, open_cloud, policy
from kit.cloud.options import LocalOptions
from kit.environment import Environment
from kit.errors import DamagedFileError, DeviceNotFoundError, KitError, VirtualBoardError
from kit.places import kit_home, read_json, write_private
from kit.ports import MQTT_TLS_PORT, WEBSOCKET_TLS_PORT
from kit.sim import board as vboard

VIRTUAL_BOARD = "default"


@dataclass(frozen=True)
class Registered:
    """A registration, the device record it left, and the current device before it."""

    registration: Registration
    record: devices.DeviceRecord
    previous_current: str | None

    @property
    def became_current(self) -> bool:
        """Whether registering changed which device the course works with."""
        return self.previous_current != self.record.thing


def register(
    cloud: Cloud, csr: Csr, *, slot: int | None = None, board: str = "", chip_serial: str = ""
) -> Registered:
    """Register `csr` in `cloud`, keep the device record and make it the current device.

    What the record already says (slot, board, chip) is kept unless given again.
    """
    # Before the cloud: a name whose folder would clash on Windows or macOS registers nothing.
    devices.check_case(csr.common_name)
    registration = cloud.register(csr)
    try:
        known: devices.DeviceRecord | None = devices.load(registration.thing)
    except (DeviceNotFoundError, DamagedFileError):
        known = None  # a damaged record is set aside when the new one is saved
    if known is not None:
        slot = known.slot if slot is None else slot
        board, chip_serial = board or known.board, chip_serial or known.chip_serial
    try:
        previous = settings.current_device()
    except DamagedFileError:
        previous = None
    record = devices.save(
        devices.DeviceRecord(
            thing=registration.thing,
            cloud=cloud.name,
            broker_host=registration.broker_host,
            broker_port=registration.broker_port,
            certificate_id=registration.certificate_id,
            slot=slot or 0,
            board=board,
            chip_serial=chip_serial,
            **cloud.record_extras(),
        ),
        csr.pem,
        registration.certificate_pem,
        registration.ca_pem,
    )
    return Registered(registration, record, previous)


def unregister(cloud: Cloud, thing: str) -> None:
    """Remove `thing` from `cloud`, then its record on this computer."""
    cloud.unregister(thing)
    _forget(thing)


def device_policy(record: devices.DeviceRecord) -> str:
    """The policy on the device's certificate, as AWS IoT holds it; the local broker enforces
    the same rules (kit.cloud.policy is the one source of both)."""
    return policy.aws_policy_document(record.region or "<region>", "<account>")


def teardown(cloud: Cloud, progress: Callable[[str], None] = lambda _: None) -> list[str]:
    """Remove every thing the kit registered in `cloud`, and their records here."""
    removed = cloud.teardown(progress)
    for thing in removed:
        _forget(thing)
    return removed


def _forget(thing: str) -> None:
    """Remove `thing`'s record on this computer, if there is one."""
    with contextlib.suppress(OSError, DeviceNotFoundError):
        devices.forget(thing)


# Choosing and starting


def open_chosen_cloud(chosen: settings.Settings, env: Environment | None = None) -> Cloud:
    """The cloud the settings choose; the local cloud on the ports `env` names, if any."""
    env = env or Environment()
    local = LocalOptions(
        port=env.broker_port or MQTT_TLS_PORT, ws_port=env.broker_ws_port or WEBSOCKET_TLS_PORT
    )
    return open_cloud(
        chosen.cloud, profile=chosen.profile or None, region=chosen.region or None, local=local
    )


def open_record_cloud(record: devices.DeviceRecord, env: Environment | None = None) -> Cloud:
    """The cloud a device was registered in (its region and profile too), whatever the
    settings say now."""
    chosen = settings.Settings(cloud=record.cloud, profile=record.profile, region=record.region)
    return open_chosen_cloud(chosen, env)


def start(
    chosen: settings.Settings,
    env: Environment | None = None,
    progress: Callable[[str], None] = lambda _: None,
    new_chip: bool = False,
) -> list[str]:
    """Start what the settings need (the cloud, if the kit runs it; the virtual board as the
    course left it); one sentence per part. Starting never undoes a later step, except that
    `new_chip` gives the virtual board a factory-new chip."""
    if new_chip and not chosen.virtual:
        raise KitError(
            "Only the virtual board's chip can be made new: a real chip's lock is final."
        )
    status = open_chosen_cloud(chosen, env).ensure_running(progress)
    said = [str(status)]
    if chosen.virtual:
        said.append(new_virtual_chip() if new_chip else resume_virtual_board())
    return said


def stop_everything() -> list[str]:
    """Stop everything the kit runs in the background: virtual boards, a class's site and its
    boards, and the local cloud; one sentence each."""
    from kit import background
    from kit.classroom import site_process  # the site's process files, not the web server
    from kit.cloud import service  # the local cloud's process, which only stopping needs
    from kit.sim import fleet

    said = []
    for info in vboard.running_boards():
        if vboard.stop(info.name):
            said.append(f"Stopped the virtual board '{info.name}'.")
    classroom = kit_home() / "class"  # kit.classroom.server.class_folder()
    if background.stop(site_process(classroom)):
        said.append("Stopped the class site.")
    if fleet.stop(classroom / "fleet"):
        said.append("Stopped the class's virtual boards.")
    if service.stop_service():
        said.append("Stopped the local cloud.")
    return said or ["Nothing the kit starts was running."]


def new_virtual_chip() -> str:
    """Make the virtual board's chip factory-new (unlocked, no keys) and run the CSR sketch."""
    info = vboard.start(VIRTUAL_BOARD, reset_chip=True)
    # The old key is gone: its firmware and its CSR are of no use any more.
    for name in (FLASHED, "capture.json", "csr.pem"):
        (kit_home() / "course" / name).unlink(missing_ok=True)
    return (
        f"The virtual board has a factory-new chip ({info.chip_serial}): unlocked, with no keys. "
        "Run notebook 01 to make a key and a CSR."
    )


def resume_virtual_board() -> str:
    """Start the virtual board with the firmware the course put on it last (the CSR sketch
    until notebook 03 flashes the AWS firmware); say what it runs."""
    try:
        running: vboard.BoardInfo | None = vboard.find(VIRTUAL_BOARD)
    except VirtualBoardError:
        running = None
    flashed = _flashed()
    if running is not None and running.firmware == "aws":
        info = running
    elif running is None and flashed is not None:
        info = vboard.start(VIRTUAL_BOARD, config=flashed[0], interval=flashed[1])
    else:
        info = running or vboard.start(VIRTUAL_BOARD)
    if info.firmware == "aws":
        return (
            f"The virtual board (chip {info.chip_serial}) runs the AWS firmware flashed in "
            "notebook 03."
        )
    return (
        f"The virtual board runs, chip {info.chip_serial}, with the CSR sketch "
        f"(its serial port: {info.pty or info.url})."
    )


# In KIT_HOME/course: the config.h and interval the virtual board's AWS firmware last ran with.
FLASHED = "flashed.json"


def forget_flashed() -> None:
    """The virtual board no longer runs the AWS firmware the course flashed."""
    (kit_home() / "course" / FLASHED).unlink(missing_ok=True)


def _flashed() -> tuple[Path, float] | None:
    """The config.h and interval the virtual board's AWS firmware was last flashed with."""
    try:
        facts = read_json(kit_home() / "course" / FLASHED, "run notebook 03 again")
    except DamagedFileError:
        return None
    if not isinstance(facts, dict) or not Path(str(facts.get("config", ""))).is_file():
        return None
    interval = facts.get("interval")
    return Path(facts["config"]), float(interval) if isinstance(interval, int | float) else 10.0


# The CSR


@dataclass(frozen=True)
class Captured:
    """What the CSR step leaves for the registration step."""

    csr: Csr
    slot: int
    board: str
    chip_serial: str

    def _repr_html_(self) -> str:
        return self.csr._repr_html_()


def capture_port(
    chosen: settings.Settings,
    ask: Callable[[list[board.BoardPort]], board.BoardPort] | None = None,
) -> tuple[str, str]:
    """The port of the board the settings choose, ready for the CSR dialog, and a sentence
    saying what the kit started to get it there ("" when nothing).

    The virtual board is started when it is not running and flashed with the CSR sketch again
    when it runs the AWS firmware; a CSR sketch that runs is used as it is (either dialog). A
    real board is the settings' port; "auto" (KIT_BOARD=auto) is the one attached, `ask`
    choosing among several.
    """
    if not chosen.virtual:
        if chosen.board == "auto":
            return board.choose_board(ask=ask).device, ""
        return chosen.board, ""
    try:
        running: vboard.BoardInfo | None = vboard.find(VIRTUAL_BOARD)
    except VirtualBoardError:
        running = None
    if running is not None and running.firmware == "csr":
        return running.url, ""
    info = vboard.start(VIRTUAL_BOARD)
    if running is None:
        return info.url, (
            f"The virtual board was not running: the kit started it (chip {info.chip_serial}, "
            "CSR sketch). It keeps running in the background until course.stop() (`kit stop` "
            "in a terminal)."
        )
    forget_flashed()  # the course's next start must not put back firmware the board lost
    return info.url, (
        "The virtual board ran the AWS firmware: the kit flashed the CSR sketch on it again "
        "(notebook 03 puts the AWS firmware back)."
    )


def capture(
    chosen: settings.Settings,
    *,
    name: str | None = None,
    slot: int = 0,
    lock_consent: bool = False,
    new_key: bool | None = None,
    on_output: Callable[[str], None] = lambda _: None,
) -> Captured:
    """Run the CSR sketch's dialog on the chosen board and keep the CSR for registering.

    The virtual chip is locked without asking: it is virtual, and `new_virtual_chip` makes it
    new again. A real chip is locked only with `lock_consent`. Unless `new_key` says, the key
    of a slot whose device is registered is kept, so running the step again is harmless.
    """
    if name:
        validate_device_name(name)
    port, started = capture_port(chosen)
    if started:
        on_output(started + "\n\n")
    if chosen.virtual:
        if not vboard.chip(VIRTUAL_BOARD).locked:
            on_output(
                "A real chip would need your consent here: locking is permanent. This chip is "
                "virtual (course.start(new_chip=True) makes it new again), so the notebook locks "
                "it.\n\n"
            )
        lock = True
    else:
        lock = lock_consent
    if new_key is None:
        new_key = not registered_key_in(port, slot)
        if not new_key:
            on_output(
                "This board's key is registered already, so the chip keeps it (run "
                "course.capture_csr(new_key=True) for a new key).\n\n"
            )
    made = board.capture_csr(
        port, name=name, slot=slot, lock=lock, new_key=new_key, on_output=on_output
    )
    captured = Captured(made.csr, made.slot, port, made.chip_serial)
    folder = kit_home() / "course"
    forget_flashed()  # the board runs the CSR sketch now
    write_private(folder / "csr.pem", made.csr.pem)
    facts = {"slot": made.slot, "board": port, "chip_serial": made.chip_serial}
    write_private(folder / "capture.json", json.dumps(facts) + "\n")
    return captured


def registered_key_in(port: str, slot: int) -> bool:
    """Whether the last capture on `port` made the key in `slot` of a device registered from
    this computer (so that key is the one the cloud knows)."""
    try:
        last = last_capture()
    except KitError:
        return False
    if (last.board, last.slot) != (port, slot):
        return False
    with contextlib.suppress(DamagedFileError):
        records = devices.all_records()
        return any(
            r.chip_serial == last.chip_serial
            and r.slot == slot
            and load_certificate(r.certificate_pem).public_key_der == last.csr.public_key_der
            for r in records
        )
    return False


def last_capture() -> Captured:
    """The CSR the last capture kept (after a kernel restart too)."""
    folder = kit_home() / "course"
    try:
        facts = json.loads((folder / "capture.json").read_text(encoding="utf-8"))
        csr = load_csr((folder / "csr.pem").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KitError("No CSR captured yet: run notebook 01_generate_csr first.") from None
    return Captured(csr, facts["slot"], facts["board"], facts["chip_serial"])


def register_captured(cloud: Cloud, captured: Captured) -> Registered:
    """Register a captured CSR, with what the capture knew about the board."""
    return register(
        cloud,
        captured.csr,
        slot=captured.slot,
        board=captured.board,
        chip_serial=captured.chip_serial,
    )


# config.h and the board


def configure(
    ssid: str,
    password: str,
    *,
    record: devices.DeviceRecord | None = None,
    certificate: str | None = None,
    broker: str | None = None,
    port: int | None = None,
    slot: int | None = None,
    led_pin: int = config_h.DEFAULT_LED_PIN,
    local_ca: str = "",
) -> config_h.RenderedConfig:
    """Render config.h for the device `record` describes, each value given here instead.

    Without `certificate` or `broker` the current device's record supplies them; a broker
    given without a port gets the default port, not the record's.
    """
    if certificate is None or broker is None:
        record = record or devices.load()
        return config_h.for_registration(
            record,
            ssid,
            password,
            slot=record.slot if slot is None else slot,
            led_pin=led_pin,
            certificate=certificate,
            broker=broker,
            port=port,
            local_ca=local_ca,
        )
    return config_h.render(
        ssid,
        password,
        broker,
        certificate,
        port=port,
        slot=slot or 0,
        led_pin=led_pin,
        local_ca=local_ca,
    )


def flash_virtual(config: Path, interval: float, misbehave: str | None = None) -> None:
    """Put the AWS firmware with `config` on the virtual board (it reboots); remember it, so
    starting the course again later puts back the same firmware."""
    vboard.start(VIRTUAL_BOARD, config=config, interval=interval, misbehave=misbehave)
    if misbehave is None:
        facts = {"config": str(config.resolve()), "interval": interval}
        write_private(kit_home() / "course" / FLASHED, json.dumps(facts) + "\n")
