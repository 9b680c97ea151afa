"""The logs of the kit's background processes (the local cloud, the class site): written by the
process itself and rotated by size, so a flood of connections cannot fill the disk.

A process's own output (what it prints, a crash's traceback) goes to another, small file, which
kit.background appends to: a file that output is appended to as well could not rotate (the
output would go on into the renamed file).
"""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from kit.places import open_private

LOG_BYTES = 5 * 1024 * 1024  # a log starts afresh at this size...
LOG_BACKUPS = 3  # ...keeping this many old ones (<name>.log.1 the newest): 20 MB at the most
LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"  # diagnosis.broker_decisions reads "kit.broker: "


def log_to(path: Path, max_bytes: int = LOG_BYTES, backups: int = LOG_BACKUPS) -> logging.Handler:
    """Write this process's log (WARNING and above) to `path`, rotated by size; in a terminal it
    shows there too. The handler is returned."""
    open_private(path).close()  # created 0600 (it names devices and addresses)

    def rotate(source: str, destination: str) -> None:
        os.replace(source, destination)
        open_private(Path(source)).close()  # the next file private too, before it is opened

    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.rotator = rotate
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    if sys.stderr is not None and sys.stderr.isatty():
        terminal = logging.StreamHandler()
        terminal.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(terminal)
    root.setLevel(logging.WARNING)
    return handler
