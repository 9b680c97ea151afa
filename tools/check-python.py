"""Stop `make` early with a clear message when the Python it found is too old."""

import sys

if sys.version_info < (3, 10):  # noqa: UP036 - this file runs before setup, on any Python
    found = ".".join(map(str, sys.version_info[:3]))
    sys.exit(
        f"The kit needs Python 3.10 or newer, but `python3` is {found}. Install a newer Python "
        "and run make again (or `make PYTHON=python3.12 lab`)."
    )
