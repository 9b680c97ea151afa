"""The KIT_* environment variables: read here and nowhere else, checked, and handed on as values.

Notebooks run in kernels that `kit demo`, `kit lab` and tests start with these set; the steps
below never look at the environment themselves, they get what this module read as parameters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kit.errors import SettingsError
from kit.ports import read_port

# Settings a variable may override, by the settings field they set.
SETTINGS_VARIABLES = {
    "board": "KIT_BOARD",
    "cloud": "KIT_CLOUD",
    "profile": "KIT_AWS_PROFILE",
    "region": "KIT_AWS_REGION",
    "interval": "KIT_PUBLISH_INTERVAL",
}
PASSWORD_VARIABLE = "KIT_WIFI_PASSWORD"


@dataclass(frozen=True)
class Environment:
    """What the KIT_* variables say, each already checked."""

    home: str = ""  # KIT_HOME: the data folder ("" for the platform's default)
    broker_port: int | None = None  # KIT_BROKER_PORT: the local cloud's MQTT/TLS port
    broker_ws_port: int | None = None  # KIT_BROKER_WS_PORT
    class_port: int | None = None  # KIT_CLASS_PORT: the class site's port (instructor notebook)
    config_h: Path | None = None  # KIT_CONFIG_H: where the course writes config.h
    headless: bool = False  # KIT_HEADLESS: no front end draws widgets (kit demo, tests)
    settings: Mapping[str, str] = field(default_factory=dict)  # overrides, by settings field
    # KIT_WIFI_PASSWORD (scripted runs only); never shown in a repr.
    wifi_password: str | None = field(default=None, repr=False)


def read(environ: Mapping[str, str] | None = None) -> Environment:
    """The KIT_* variables of `environ` (default: this process's), or SettingsError."""
    values = os.environ if environ is None else environ
    config_h = values.get("KIT_CONFIG_H", "")
    return Environment(
        home=values.get("KIT_HOME", ""),
        broker_port=_port(values, "KIT_BROKER_PORT"),
        broker_ws_port=_port(values, "KIT_BROKER_WS_PORT"),
        class_port=_port(values, "KIT_CLASS_PORT"),
        config_h=Path(config_h).expanduser() if config_h else None,
        headless=bool(values.get("KIT_HEADLESS")),
        settings={name: values[v] for name, v in SETTINGS_VARIABLES.items() if values.get(v)},
        wifi_password=values.get(PASSWORD_VARIABLE),
    )


def wifi_password() -> str | None:
    """KIT_WIFI_PASSWORD alone (None when unset; "" is an open network)."""
    return os.environ.get(PASSWORD_VARIABLE)


def headless() -> bool:
    """KIT_HEADLESS alone: no front end draws widgets (kit demo, tests)."""
    return bool(os.environ.get("KIT_HEADLESS"))


def for_jupyterlab(bin_dir: str, data_dir: str = "") -> dict[str, str]:
    """This process's environment for JupyterLab, with the kit's own `bin` first on PATH, so
    `kit` works in the terminals a student opens in Lab (the virtualenv is not activated), and
    `data_dir` first on JUPYTER_PATH (where the kit's kernelspec is)."""
    path = os.environ.get("PATH", "")
    rest = [part for part in path.split(os.pathsep) if part and part != bin_dir]
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, *rest])}
    if data_dir:
        others = [part for part in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if part]
        env["JUPYTER_PATH"] = os.pathsep.join([data_dir, *others])
    return env


def session_notebook() -> str:
    """The notebook a kernel runs for, as JupyterLab tells it (JPY_SESSION_NAME; "" if none)."""
    return os.environ.get("JPY_SESSION_NAME", "")


def user_shell() -> str:
    """The user's shell ($SHELL; "" when unset, as on Windows)."""
    return os.environ.get("SHELL", "")


def home() -> str:
    """KIT_HOME alone ("" when unset): every command needs it, whatever else is set."""
    return os.environ.get("KIT_HOME", "")


def settings_overrides() -> dict[str, str]:
    """The settings the KIT_* variables override, by settings field (unchecked text)."""
    return {name: os.environ[v] for name, v in SETTINGS_VARIABLES.items() if os.environ.get(v)}


def _port(values: Mapping[str, str], variable: str) -> int | None:
    """A port variable's value, None when unset, SettingsError when it names no port."""
    text = values.get(variable, "")
    if not text:
        return None
    port = read_port(text)
    if port is None:
        raise SettingsError(
            f"{variable} must be a port number from 1 to 65535 (it is {text!r}). Fix or "
            f"unset it (`unset {variable}`) and try again."
        )
    return port
