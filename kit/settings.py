"""The course settings: which board and which cloud, shared by notebooks and the CLI.

Stored in KIT_HOME/settings.json (written by `kit use` or the setup notebook's settings cell);
KIT_BOARD, KIT_CLOUD, KIT_AWS_PROFILE, KIT_AWS_REGION and KIT_PUBLISH_INTERVAL override them.
The same file remembers the current device; this module is the only one that reads or writes it.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from kit import environment
from kit.errors import SettingsError
from kit.places import damaged, kit_home, read_json, write_private
from kit.printable import printable

VIRTUAL = "virtual"
CLOUDS = ("local", "aws", "class")  # class: through the instructor's class server


@dataclass(frozen=True)
class Settings:
    """Which board and which cloud the course uses."""

    board: str = VIRTUAL  # "virtual", or a serial port / URL of a real board
    cloud: str = "local"  # "local", "aws", or "class" (the instructor's class server)
    profile: str = ""  # AWS profile ("" = the standard chain)
    region: str = ""  # AWS region ("" = the profile's)
    interval: float = 10.0  # the virtual board's seconds between readings

    @property
    def virtual(self) -> bool:
        return self.board == VIRTUAL

    def describe(self) -> str:
        """The choice as a sentence: "The course uses the virtual board and the local cloud"."""
        board = "the virtual board" if self.virtual else f"the board on {self.board}"
        if self.cloud == "aws":
            where = ", ".join(
                part
                for part in (
                    f"profile {self.profile}" if self.profile else "",
                    f"region {self.region}" if self.region else "",
                )
                if part
            )
            cloud = f"AWS IoT Core ({where})" if where else "AWS IoT Core"
        elif self.cloud == "class":
            cloud = "the class server (your teacher's cloud)"
        else:
            cloud = "the local cloud"
        return f"The course uses {board} and {cloud}."

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(printable(self.describe()), quote=False)}</p>"


# What a student loses when a damaged settings.json is set aside.
_AFTER_REPAIR = "and choose the board and cloud again (notebook 00, or `kit use`)"


def path() -> Path:
    return kit_home() / "settings.json"


def _stored() -> dict[str, Any]:
    """Everything settings.json holds (empty when there is none), or DamagedFileError."""
    return read_json(path(), _AFTER_REPAIR) or {}


def _store(values: dict[str, Any]) -> None:
    write_private(path(), json.dumps(values, indent=2) + "\n")


def load() -> Settings:
    """The saved settings, with KIT_* environment variables taking precedence."""
    course = _stored().get("course", {})
    if not isinstance(course, dict):
        raise damaged(path(), "its 'course' entry is not a set of named fields", _AFTER_REPAIR)
    values = {f.name: course.get(f.name, f.default) for f in fields(Settings)}
    for name in ("board", "cloud", "profile", "region"):
        if not isinstance(values[name], str) or _problem(name, values[name]):
            raise damaged(path(), f"its '{name}' is not a usable value", _AFTER_REPAIR)
    if _interval(values["interval"]) is None:
        raise damaged(path(), "its 'interval' is not a number of seconds", _AFTER_REPAIR)
    for name, text in environment.settings_overrides().items():
        if _problem(name, text):
            variable = environment.SETTINGS_VARIABLES[name]
            raise SettingsError(f"{variable} {_problem(name, text)}. Fix or unset it.")
        values[name] = text
    values["interval"] = _interval(values["interval"])
    return Settings(**values)


def check(settings: Settings) -> Settings:
    """The settings, if every value is usable; SettingsError naming the first that is not."""
    for name in ("board", "cloud", "profile", "region"):
        problem = _problem(name, getattr(settings, name))
        if problem:
            raise SettingsError(f"The {name} {problem}.")
    if _interval(settings.interval) is None:
        raise SettingsError("The interval must be a number of seconds from 0.1 to 86400.")
    return settings


def _problem(name: str, value: str) -> str:
    """What is wrong with a text setting ("" when nothing is)."""
    if name == "cloud" and value not in CLOUDS:
        return "must be 'local', 'aws' or 'class'"
    if name == "interval":
        return (
            "" if _interval(value) is not None else "must be a number of seconds from 0.1 to 86400"
        )
    if not value.isprintable() or len(value) > 200:
        return "has characters a port, profile or region name cannot have (a line break?)"
    return ""


def _interval(value: object) -> float | None:
    """Seconds between readings, from a number or text, if it is sensible (0.1 to 86400)."""
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if 0.1 <= seconds <= 86_400 else None  # also None for nan


def save(settings: Settings) -> Settings:
    """Keep the settings for every notebook, a restarted kernel and the CLI."""
    _store({**_stored(), "course": asdict(check(settings))})
    return settings


def current_device() -> str | None:
    """The thing name of the current device, if there is one."""
    name = _stored().get("current_device")
    if name is not None and not isinstance(name, str):
        raise damaged(path(), "its 'current_device' is not a name", _AFTER_REPAIR)
    return name or None


def set_current_device(thing: str | None) -> None:
    """Make `thing` the current device (None: no current device)."""
    _store({**_stored(), "current_device": thing})
