"""The virtual board's USB serial port, served as a TCP socket everywhere and a pty on Linux.

A host "opens the port" by opening the pty's device path or connecting to the socket (pyserial:
`socket://127.0.0.1:<port>`, or `sim://<board>`). As on a real board, the sketch can wait for
that (`while (!Serial)`), bytes written while no host has the port open are lost, and only one
host at a time can have it. The pty is Linux's alone by default: macOS' pty answers poll() with
POLLNVAL and never hangs up while no host has it open, so there it is only tried when asked
(`kit sim --pty`), and Windows has none; `sim://<board>` takes the socket on every system.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import struct
import sys
import threading
import time

from kit.ports import listen_on

if sys.platform != "win32":
    try:
        import fcntl
        import pty
        import termios
        import tty
    except ImportError:  # taken away by the foreign-platform tests
        pty = None  # type: ignore[assignment]

# A host is only "there" once it has finished opening the port. pyserial flushes its input
# right after opening, which would swallow what a board printed in that instant; a real board
# waits for DTR, which arrives after USB set-up. On a pty we see the host's flush (packet
# mode); otherwise we wait this long, which is longer than any open takes.
SETTLE_SECONDS = 0.1


class PortClosed(Exception):
    """The host closed the port while the sketch was reading (internal signal)."""


class VirtualSerialPort:
    """One serial port that a pty and a socket both lead to; one host at a time."""

    def __init__(self, socket_port: int = 0, use_pty: bool | None = None) -> None:
        """A port served on `socket_port` (0: any free one) and, where `use_pty` says (by
        default on Linux only), on a pty too."""
        self._input: queue.Queue[bytes] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pty_open = False
        self._client: socket.socket | None = None
        self.opened = threading.Condition()
        self.open_count = 0  # how many times a host has opened the port
        # The kit's one rule for listening (exclusive on Windows): a taken port says so.
        (self._server,) = listen_on(
            "127.0.0.1",
            socket_port,
            holder="another virtual board or program",
            fix="choose another --socket-port, or leave it out for any free port",
        )
        self.socket_port: int = self._server.getsockname()[1]
        self.pty_path: str | None = None
        self._master: int | None = None
        self._threads = threads = [threading.Thread(target=self._serve_socket, daemon=True)]
        if use_pty is None:
            use_pty = sys.platform == "linux"
        if sys.platform != "win32" and use_pty and pty is not None:
            self._master, slave = pty.openpty()
            tty.setraw(slave, termios.TCSANOW)
            # Packet mode: reads carry a status byte, which tells us when the host flushes.
            fcntl.ioctl(self._master, termios.TIOCPKT, struct.pack("i", 1))
            # Never block the board on a host that does not read: drop what does not fit.
            os.set_blocking(self._master, False)
            self.pty_path = os.ttyname(slave)
            # Closing our end of the slave lets us see when a host opens it (POLLHUP clears).
            os.close(slave)
            threads.append(threading.Thread(target=self._serve_pty, daemon=True))
        for thread in threads:
            thread.start()

    @property
    def socket_url(self) -> str:
        """The pyserial URL of the socket side."""
        return f"socket://127.0.0.1:{self.socket_port}"

    @property
    def host_connected(self) -> bool:
        """Whether a host has the port open (the sketch's `Serial` is true)."""
        return self._pty_open or self._client is not None

    def wait_for_host(self, stop: threading.Event | None = None) -> None:
        """Block until a host opens the port, as `while (!Serial);` does."""
        with self.opened:
            while not self.host_connected:
                if (stop and stop.is_set()) or self._stop.is_set():
                    raise PortClosed
                self.opened.wait(0.1)

    def write(self, data: bytes) -> None:
        """Send bytes to the host; lost if no host has the port open (as on a real board)."""
        with self._lock:
            if self._pty_open and self._master is not None:
                with contextlib.suppress(OSError):  # BlockingIOError: the host's buffer is full
                    os.write(self._master, data)
            if self._client is not None:
                with contextlib.suppress(OSError):
                    self._client.sendall(data)

    def read(self, timeout: float | None = None) -> bytes:
        """The next bytes the host sent; b"" after `timeout` seconds with nothing."""
        try:
            return self._input.get(timeout=timeout)
        except queue.Empty:
            if self._stop.is_set():
                raise PortClosed from None
            return b""

    def drain(self) -> None:
        """Forget unread input, as a reset does."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._input.get_nowait()

    def close(self) -> None:
        """Stop serving, as if the USB cable were pulled: hosts see the port disappear."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        with contextlib.suppress(OSError):
            self._server.close()
        client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)

    def _opened_by_host(self) -> None:
        with self.opened:
            self.open_count += 1
            self.opened.notify_all()

    def _serve_pty(self) -> None:
        """Watch the pty: POLLHUP means no host has it open; read what a host sends."""
        if sys.platform != "win32":  # never started there: no pty
            master = self._master
            assert master is not None
            try:
                self._watch_pty(master)
            finally:
                # Only this thread closes the fd, so no other thread can poll a reused number.
                with self._lock:
                    self._master = None
                    self._pty_open = False
                    os.close(master)

    def _watch_pty(self, master: int) -> None:
        if sys.platform != "win32":  # never started there: no pty
            poller = select.poll()
            poller.register(master, select.POLLIN | select.POLLPRI)
            opening_since: float | None = None  # the slave is open, the host not settled yet
            while not self._stop.is_set():
                try:
                    events = poller.poll(20)
                except (OSError, ValueError):
                    return
                flags = 0
                for _, flag in events:
                    flags |= flag
                flushed = False
                if flags & (select.POLLIN | select.POLLPRI):
                    # Read before handling a hang-up: a host may write its last line and close.
                    try:
                        packet = os.read(master, 4097)
                    except OSError:
                        packet = b""
                    if packet[:1] == bytes([termios.TIOCPKT_DATA]):
                        if packet[1:]:
                            self._input.put(packet[1:])
                    elif packet:
                        flushed = bool(packet[0] & termios.TIOCPKT_FLUSHREAD)
                if flags & select.POLLHUP:
                    self._pty_open = False
                    opening_since = None
                    time.sleep(0.02)
                elif not self._pty_open:
                    opening_since = opening_since or time.monotonic()
                    if flushed or time.monotonic() - opening_since > SETTLE_SECONDS:
                        self._pty_open = True
                        opening_since = None
                        self._opened_by_host()

    def _serve_socket(self) -> None:
        """Accept one host at a time; a second one is turned away, like a busy serial port."""
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.host_connected:
                with contextlib.suppress(OSError):
                    client.close()
                continue
            # Answer each small write at once (no Nagle delay), as a serial line would.
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            time.sleep(SETTLE_SECONDS)  # let pyserial finish opening (it flushes its input)
            self._client = client
            self._opened_by_host()
            try:
                while True:
                    data = client.recv(4096)
                    if not data:
                        break
                    self._input.put(data)
            except OSError:
                pass
            finally:
                with self._lock:
                    self._client = None
                with contextlib.suppress(OSError):
                    client.close()
