"""The course settings: which board and which cloud, shared by notebooks and the CLI.

Stored in KIT_HOME/settings.json (written by `kit use` or the setup notebook's settings cell);
KIT_BOARD, KIT_CLOUD, KIT_AWS_PROFILE, KIT_AWS_REGION and KIT_PUBLISH_INTERVAL override them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

from kit.errors import KitError
from kit.places import kit_home, write_private

VIRTUAL = "virtual"


@dataclass(frozen=True)
class Settings:
    """Which board and which cloud the course uses."""

    board: str = VIRTUAL  # "virtual", or a serial port / URL of a real board
    cloud: str = "local"  # "local" or "aws"
    profile: str = ""  # AWS profile ("" = the standard chain)
    region: str = ""  # AWS region ("" = the profile's)
    interval: float = 10.0  # the virtual board's seconds between readings

    @property
    def virtual(self) -> bool:
        return self.board == VIRTUAL


_ENV = {
    "board": "KIT_BOARD",
    "cloud": "KIT_CLOUD",
    "profile": "KIT_AWS_PROFILE",
    "region": "KIT_AWS_REGION",
    "interval": "KIT_PUBLISH_INTERVAL",
}


def load() -> Settings:
    """The saved settings, with KIT_* environment variables taking precedence."""
    try:
        saved = json.loads((kit_home() / "settings.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        saved = {}
    values = {f.name: saved.get("course", {}).get(f.name, f.default) for f in fields(Settings)}
    for name, variable in _ENV.items():
        if os.environ.get(variable):
            values[name] = os.environ[variable]
    try:
        values["interval"] = float(values["interval"])
    except ValueError:
        raise KitError(
            f"KIT_PUBLISH_INTERVAL must be a number of seconds, not {values['interval']!r}."
        ) from None
    if values["cloud"] not in ("local", "aws"):
        raise KitError(f"The cloud must be 'local' or 'aws', not {values['cloud']!r}.")
    return Settings(**values)


def save(settings: Settings) -> Settings:
    """Keep the settings for every notebook, a restarted kernel and the CLI."""
    path = kit_home() / "settings.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        saved = {}
    saved["course"] = asdict(settings)
    write_private(path, json.dumps(saved, indent=2) + "\n")
    return settings
