"""Peers for board tests: a scripted serial device on a real pty, speaking raw bytes."""

from __future__ import annotations

import os
import pty
import select
import threading
import time
import tty


def declining_lock(hang: float) -> list[tuple[str, bytes]]:
    """A real board's CSR sketch on an unlocked chip, answered "N": it says why and stops
    (then stays silent for `hang` seconds)."""
    return [
        ("say", b"ECCX08 Serial Number = 0123C13DA283AFA5EE\r\n\r\n"),
        ("say", b"The ECCX08 on your board is not locked, would you like to PERMANENTLY "),
        ("say", b"configure and lock it now? (y/N) [N]: "),
        ("hear", b""),
        ("say", b"N\r\nUnfortunately you can't proceed without locking it :(\r\n"),
        ("hang", str(hang).encode()),
    ]


class ScriptedBoard:
    """A pty whose far end plays a fixed script once a host opens the port: for dialogs the
    virtual board never produces (garbled CSRs, unknown prompts)."""

    def __init__(self, script: list[tuple[str, bytes]]) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        os.close(slave)
        self.received = b""
        self.script = script
        self.thread = threading.Thread(target=self._play, daemon=True)
        self.thread.start()

    def _play(self) -> None:
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        deadline = time.monotonic() + 10
        while any(flag & select.POLLHUP for _, flag in poller.poll(20)):
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        for action, data in self.script:
            if action == "say":
                os.write(self.master, data)
            elif action == "hear":  # wait for one line from the host
                while not self.received.endswith(b"\n"):
                    if not select.select([self.master], [], [], 5)[0]:
                        return
                    self.received += os.read(self.master, 1024)
                self.received += b"|"
            elif action == "hang":
                time.sleep(float(data))

    def close(self) -> None:
        os.close(self.master)
