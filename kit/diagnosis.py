"""What the board and the broker said: the virtual board's serial log, the broker's decisions,
the policy at work, and why a board sends nothing (notebooks 04 and 05).

These only look (and, for the policy demonstration, re-flash the virtual board for a few
seconds); the steps that change things are in kit.steps.
"""

from __future__ import annotations

import time
from pathlib import Path

from kit import devices, settings, steps
from kit.cloud import Cloud
from kit.errors import VirtualBoardError
from kit.sim import board as vboard


def virtual_board_problem() -> str | None:
    """Why the virtual board cannot be talking to the cloud (not running, or still the CSR
    sketch), or None when it runs the AWS firmware."""
    try:
        firmware = vboard.find(steps.VIRTUAL_BOARD).firmware
    except VirtualBoardError:
        return "The virtual board is not running: run course.start() in notebook 00."
    if firmware != "aws":
        return (
            "The virtual board still runs the CSR sketch, not the AWS firmware: notebook 03 puts "
            "the firmware on it (run 01, 02 and 03 first)."
        )
    return None


def serial_log(lines: int = 15, timeout: float = 15) -> str:
    """The last lines the virtual board printed after its latest boot, once it has reached the
    broker or given up (waiting up to `timeout` seconds)."""
    problem = virtual_board_problem()
    if problem:
        return problem
    path = vboard.board_dir(steps.VIRTUAL_BOARD) / "serial.log"
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        booted = text[text.rfind("WiFi: joining") :] if "WiFi: joining" in text else text
        if "MQTT: connected" in booted or "MQTT: failed" in booted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return "\n".join(booted.replace("\r", "").strip().splitlines()[-lines:])


def misbehave(config: Path, mode: str, interval: float, seconds: float = 4.0) -> str:
    """What the virtual board logged while misbehaving for a few seconds (then it behaves)."""
    log = vboard.board_dir(steps.VIRTUAL_BOARD) / "serial.log"
    begin = log.stat().st_size if log.exists() else 0
    steps.flash_virtual(config, 1.0, misbehave=mode)
    time.sleep(seconds)
    with log.open("rb") as handle:
        handle.seek(begin)
        text = handle.read().decode("utf-8", errors="replace").replace("\r", "")
    steps.flash_virtual(config, interval)  # behave again
    return text[text.find("WiFi: joining") :]  # from the misbehaving board's boot on


def broker_decisions(count: int) -> list[str]:
    """The local broker's last `count` decisions (accepted, refused, closed) from its log."""
    from kit.cloud.local import cloud_dir

    log = cloud_dir() / "broker.log"
    said = log.read_text(errors="replace").splitlines() if log.exists() else []
    decisions = [line for line in said if "kit.broker" in line][-count:]
    return [line.split("kit.broker: ", 1)[-1] for line in decisions]


def diagnose(
    cloud: Cloud,
    record: devices.DeviceRecord,
    chosen: settings.Settings,
    got: int,
    waited: float,
) -> str:
    """Why `record`'s device sent fewer new readings than expected, and the one thing to do."""
    thing = record.thing
    counted = "No new reading" if got == 0 else f"Only {got} new reading(s)"
    during = f" in {waited:.0f} s" if waited >= 1 else ""  # known at once: nothing waited for
    sending = "sends no readings"
    return f"{counted} from {thing}{during}. " + _why_silent(cloud, record, chosen, sending)


def no_answer(cloud: Cloud, record: devices.DeviceRecord, chosen: settings.Settings) -> str:
    """Why the device did not answer an LED command, and the one thing to do."""
    return _why_silent(cloud, record, chosen, "did not answer (a line 'LED: ...' when it does)")


def _why_silent(
    cloud: Cloud, record: devices.DeviceRecord, chosen: settings.Settings, silence: str
) -> str:
    """What keeps the board from talking to the cloud: each part of the chain checked, from
    the cloud to the board, and the one thing to do; `silence` is what the board did not do."""
    thing = record.thing
    status = cloud.status()
    if not status.reachable:
        return str(status)
    presence = cloud.presence(thing)
    # Where a real board's serial output is read: the virtual board's log is in the notebook.
    monitor = (
        "course.serial_log() shows"
        if chosen.virtual
        else "the Arduino IDE's Serial Monitor (115200 baud) shows"
    )
    if chosen.virtual:
        problem = virtual_board_problem()
        if problem:
            return problem
        failed = [line for line in serial_log(40, 0).splitlines() if "MQTT: failed" in line]
        if presence.connected is not True and failed:
            return (
                f"The board cannot connect: its serial log says '{failed[-1]}'. Run notebook 03 "
                "again so config.h names this cloud's broker and your certificate."
            )
    if presence.connected is True:
        return f"{thing} is connected to the cloud but {silence}: {monitor} why."
    seen = presence.last_seen
    last = time.strftime("%H:%M:%S", time.localtime(seen)) if seen else "never"
    return (
        f"Checked: the device record ({record.broker_host}:{record.broker_port}), the cloud "
        f"(reachable), {thing}'s last message or connection ({last}). The board is not "
        f"connected: {monitor} why (WiFi name, password, broker), then run notebook 03 again "
        "if a value is wrong."
    )
