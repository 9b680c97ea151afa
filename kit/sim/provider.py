"""The virtual board as a board provider: its ports in board discovery, its `sim://` URLs.

`kit.board` loads providers from the `kit.board_providers` entry point group when boards are
listed or a provider's URL is opened, never when it is imported: the virtual board sits above the
layer it imitates, and plugs into it the way a USB board plugs into the computer.
"""

from __future__ import annotations

import serial

from kit.board_ports import BoardPort, BoardProvider, ResetAdvice
from kit.sim import board

# pyserial finds `protocol_sim` (kit/sim/protocol_sim.py) in the packages listed here.
if "kit.sim" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("kit.sim")


def ports() -> list[BoardPort]:
    """A port for each running virtual board."""
    return [
        BoardPort(
            info.url,
            f"virtual MKR WiFi 1010 ({info.name})",
            "virtual",
            usb_serial=info.chip_serial,
            description=info.pty or "",
        )
        for info in board.running_boards()
    ]


def check(url: str) -> None:
    """Raise VirtualBoardError (saying how to start it) unless the board behind `url` runs."""
    board.find(url.removeprefix("sim://").strip("/") or board.DEFAULT_BOARD)


def owns(device: str) -> bool:
    """Whether `device` leads to a virtual board: a sim:// URL, or a running board's pty or
    socket (what `kit sim` prints)."""
    if device.startswith("sim://"):
        return True
    return any(device in (info.pty, info.socket_url) for info in board.running_boards())


# A virtual board has no reset button. A sketch that stopped (a failure, a declined lock) starts
# again when the port is opened again; one waiting in the middle of a dialog another program
# started stays there, as on a real board, until the board restarts: `kit stop` (or
# course.stop()) stops it, and the next capture starts it again.
RESET_ADVICE = ResetAdvice(
    halted="Run",
    stuck=(
        "Restart the virtual board (`kit stop` in a terminal, course.stop() in a notebook: they "
        "stop the local cloud too, and the capture starts the board again), then run"
    ),
    reconnect="Run",
)

PROVIDER = BoardProvider(
    scheme="sim", ports=ports, check=check, owns=owns, reset_advice=RESET_ADVICE
)
