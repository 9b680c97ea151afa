"""arduino-cli: compile and upload the course's sketches, when it is installed.

It installs the SAMD core and the libraries the sketches need, then compiles and uploads to the
detected board. Without arduino-cli, `instructions()` says how to get it, or what to do in the
Arduino IDE instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kit.errors import ArduinoError
from kit.places import checkout

CORE = "arduino:samd"
FQBN = {"MKR WiFi 1010": "arduino:samd:mkrwifi1010", "Nano 33 IoT": "arduino:samd:nano_33_iot"}
LIBRARIES = (
    "ArduinoECCX08",
    "ArduinoBearSSL",
    "ArduinoMqttClient",
    "WiFiNINA",
    "Adafruit SHT31 Library",
)


def available() -> bool:
    """Whether arduino-cli is on PATH."""
    return shutil.which("arduino-cli") is not None


def instructions() -> str:
    """How to put the sketch on the board without the kit's help."""
    return (
        "Upload sketches/AWS/AWS.ino with the Arduino IDE: install the board package 'Arduino "
        "SAMD Boards' and the libraries " + ", ".join(LIBRARIES) + "; open the sketch (config.h "
        "is next to it), choose the board (MKR WiFi 1010 or Nano 33 IoT) and its port, and press "
        "Upload. Or install arduino-cli (`conda install -c conda-forge arduino-cli`, listed in "
        "environment.yml) and the kit does it for you."
    )


def run(*args: str, timeout: float = 900) -> dict[str, Any] | list[Any]:
    """One arduino-cli command with JSON output; ArduinoError with the reason on failure."""
    if not available():
        raise ArduinoError("arduino-cli is not installed. " + instructions())
    done = subprocess.run(
        ["arduino-cli", *args, "--format", "json"], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise ArduinoError(explain(args, done.stdout + done.stderr))
    return json.loads(done.stdout) if done.stdout.strip() else {}


def explain(args: tuple[str, ...], output: str) -> str:
    """What an arduino-cli failure means, for a student."""
    text = output.strip()
    lowered = text.lower()
    if "no such host" in lowered or "dial tcp" in lowered or "network is unreachable" in lowered:
        return (
            "arduino-cli could not download (no internet connection?). Connect to the "
            "internet once to install the board package and libraries, then try again."
        )
    if "busy" in lowered or "permission denied" in lowered:
        return (
            "The board's port is in use: close the Arduino IDE's Serial Monitor (or the "
            "other program using the board) and try again."
        )
    if (
        "no board" in lowered
        or "no upload port" in lowered
        or ("not found" in lowered and "port" in lowered)
    ):
        return (
            "No board to upload to: plug it in with a data USB cable (double-tap reset if "
            "it does not show up) and try again."
        )
    if args and args[0] == "compile":
        errors = [line for line in text.splitlines() if "error" in line.lower()][:5]
        return "The sketch did not compile:\n" + "\n".join(errors or text.splitlines()[-5:])
    return f"arduino-cli {' '.join(args)} failed: {text[-500:]}"


def prepare(progress: Callable[[str], None] = print) -> None:
    """Install the SAMD core and the sketches' libraries (once; later calls are quick)."""
    progress("Updating the board index ...")
    run("core", "update-index")
    progress(f"Installing the {CORE} core ...")
    run("core", "install", CORE)
    for library in LIBRARIES:
        progress(f"Installing the {library} library ...")
        run("lib", "install", library)


def detect() -> tuple[str, str]:
    """(port, FQBN) of the one supported board attached."""
    listing = run("board", "list")
    ports = listing.get("detected_ports", listing) if isinstance(listing, dict) else listing
    found = []
    for entry in ports or []:
        for match in entry.get("matching_boards", []):
            if match.get("fqbn") in FQBN.values():
                found.append((entry["port"]["address"], match["fqbn"]))
    if not found:
        raise ArduinoError(
            "No MKR WiFi 1010 or Nano 33 IoT found. Plug it in with a data USB "
            "cable (double-tap reset if it does not show up) and try again."
        )
    if len(found) > 1:
        raise ArduinoError(
            "Several boards are attached: "
            + ", ".join(p for p, _ in found)
            + ". Unplug the others, or upload from the Arduino IDE."
        )
    return found[0]


def upload(
    sketch: str = "AWS", progress: Callable[[str], None] = print, folder: Path | None = None
) -> str:
    """Compile a sketch of the course and upload it to the attached board; return the port."""
    folder = folder or checkout() / "sketches" / sketch
    if sketch == "AWS" and not (folder / "config.h").exists():
        raise ArduinoError("sketches/AWS/config.h is missing: render it first (notebook 03).")
    prepare(progress)
    port, fqbn = detect()
    progress(f"Compiling {sketch} for {fqbn} ...")
    run("compile", "--fqbn", fqbn, str(Path(folder)))
    progress(f"Uploading to {port} ...")
    run("upload", "--fqbn", fqbn, "--port", port, str(Path(folder)))
    progress("Uploaded.")
    return port
