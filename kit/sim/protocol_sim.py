"""pyserial URL handler for `sim://<board>`: a running virtual board's port, from any process.

pyserial looks for `protocol_<scheme>` modules in the packages listed in
`serial.protocol_handler_packages`; `kit.sim.provider` adds `kit.sim` there (kit.board loads
it before opening a `sim://` URL), so
`serial.serial_for_url("sim://default")` opens the virtual board named "default".
"""

from __future__ import annotations

import contextlib
import socket
from urllib.parse import urlsplit

from serial import SerialException
from serial.urlhandler import protocol_socket

from kit.errors import KitError
from kit.sim import board


class Serial(protocol_socket.Serial):
    """A socket serial port whose address is looked up by board name."""

    # pyserial's socket handler keeps its connection in this private attribute (its stubs do
    # not declare it); close() below shuts it down itself.
    _socket: socket.socket | None

    def from_url(self, url: str) -> tuple[str, int]:
        """sim://<name> → the board's socket on 127.0.0.1."""
        parts = urlsplit(url)
        if parts.scheme != "sim":
            raise SerialException(f"expected sim://<board name>, not {url!r}")
        name = parts.netloc or parts.path.lstrip("/") or board.DEFAULT_BOARD
        try:
            info = board.find(name)
        except KitError as error:
            raise SerialException(str(error)) from None
        return ("127.0.0.1", info.socket_port)

    def close(self) -> None:
        """Close at once: pyserial's socket handler sleeps 0.3 s here for remote servers, but
        the virtual board notices a closed port within milliseconds."""
        # pyserial's private _socket, closed here to skip the handler's 0.3 s sleep.
        if self.is_open and self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None
        self.is_open = False
